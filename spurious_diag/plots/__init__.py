"""Plot: one function per figure, DataFrames in, ``Figure`` out. Nothing is shown; nothing is saved
unless the caller saves it. Every function accepts ``ax=`` to draw into an existing axes
(:func:`residual_shift_plot`, which stacks panels, takes ``fig=``, or ``ax=`` for one panel).
:mod:`.demo_figures` lists every figure of a demo run and the tables it is drawn from."""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "angles": ["angle_violins"],
    "curves": ["collapse_curve"],
    "heatmaps": ["trajectory_heatmap", "update_heatmap"],
    "matrices": ["accuracy_matrix_plot"],
    "probes": ["format_probe_plot", "grafting_curve_plot", "linear_probe_plot", "recovery_curve",
               "residual_shift_plot"],
    "sweeps": ["freeze_sweep"],
})
