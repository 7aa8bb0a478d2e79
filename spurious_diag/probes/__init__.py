"""Probe: tell spurious forgetting (alignment lost, knowledge kept) from real forgetting.

One module per probe, each working on any HF causal LM and prompt/completion records
(DESIGN.md §3): :mod:`.recovery`, :mod:`.format_probe`, :mod:`.linear_probe`, :mod:`.grafting`,
:mod:`.residual_shift` (math in :mod:`.similarity`), :mod:`.chat_alignment` (a chat model's
turn-ending and correctness). Over a whole run: :mod:`.forgetting_map` (the old task with layers
reverted, and the linear probes, per layer × step), :mod:`.recovery_curve` (recovery from every
checkpoint) and :func:`diagnose_run` (:mod:`.run_diagnosis`), walking the checkpoints with
:mod:`.run_steps`. The paper's other views: :mod:`.landscape`, :mod:`.feature_view`,
:mod:`.fisher_angle`. :func:`diagnose` (:mod:`.diagnose`) runs the probes (one runner each,
:mod:`.runners`) with :class:`DiagnoseOptions` (:mod:`.options`), applies the verdict's rules
(:mod:`.rules`) and recommends a freeze depth (:mod:`.recommend`); the result is a
:class:`Diagnosis` (:mod:`.diagnosis`). Helpers stay importable from their modules.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "chat_alignment": ["chat_alignment"],
    "diagnose": ["diagnose"],
    "diagnosis": ["Diagnosis"],
    "feature_view": ["feature_view"],
    "fisher_angle": ["fisher_angle_table", "fisher_angle_correlation"],
    "forgetting_map": ["forgetting_map", "probe_map", "revert_layers"],
    "format_probe": ["format_probe"],
    "grafting": ["grafting_curve"],
    "landscape": ["loss_landscape", "project_trajectory"],
    "linear_probe": ["linear_probe"],
    "options": ["DiagnoseOptions", "RecoverySettings"],
    "recovery": ["run_recovery"],
    "recovery_curve": ["recovery_by_step"],
    "residual_shift": ["residual_shift"],
    "run_diagnosis": ["diagnose_run"],
})
