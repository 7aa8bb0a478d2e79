"""Plot: one function per figure, DataFrames in, ``Figure`` out. Nothing is shown; nothing is saved
unless the caller saves it. Every function accepts ``ax=`` to draw into an existing axes
(:func:`residual_shift_plot`, which stacks panels, takes ``fig=``, or ``ax=`` for one panel)."""

from .angles import angle_violins
from .curves import collapse_curve
from .heatmaps import trajectory_heatmap, update_heatmap
from .matrices import accuracy_matrix_plot
from .probes import (
    format_probe_plot,
    grafting_curve_plot,
    linear_probe_plot,
    recovery_curve,
    residual_shift_plot,
)
from .sweeps import freeze_sweep

__all__ = [
    "update_heatmap",
    "trajectory_heatmap",
    "angle_violins",
    "collapse_curve",
    "freeze_sweep",
    "accuracy_matrix_plot",
    "recovery_curve",
    "format_probe_plot",
    "linear_probe_plot",
    "grafting_curve_plot",
    "residual_shift_plot",
]
