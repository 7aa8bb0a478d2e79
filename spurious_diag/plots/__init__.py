"""Plot: one function per figure, DataFrames in, ``Figure`` out. Nothing is shown; nothing is saved
unless the caller saves it. Every function accepts ``ax=`` to draw into an existing axes
(:func:`residual_shift_plot`, which stacks panels, takes ``fig=``, or ``ax=`` for one panel).
:mod:`.demo_figures` lists every figure of a demo run and the tables it is drawn from."""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "angles": ["angle_violins", "window_angles_plot"],
    "curves": ["collapse_curve"],
    "features": ["feature_shift_heatmap", "feature_view_plot"],
    "fisher_angle": ["fisher_angle_plot"],
    "forgetting": ["forgetting_map_heatmap", "probe_map_heatmap", "recovery_by_step_plot"],
    "heatmaps": ["trajectory_heatmap", "update_heatmap"],
    "landscape": ["landscape_panels", "landscape_plot"],
    "matrices": ["accuracy_matrix_plot"],
    "probes": ["format_probe_plot", "grafting_curve_plot", "linear_probe_plot", "recovery_curve",
               "residual_shift_plot"],
    "sweeps": ["freeze_sweep"],
})
