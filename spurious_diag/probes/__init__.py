"""Probe: tell spurious forgetting (alignment lost, knowledge kept) from real forgetting.

One module per probe, each working on any HF causal LM and prompt/completion records
(DESIGN.md §3): :mod:`.recovery`, :mod:`.format_probe`, :mod:`.linear_probe`, :mod:`.grafting`,
:mod:`.residual_shift` (math in :mod:`.similarity`), :mod:`.chat_alignment` (a chat model's
turn-ending and correctness). :func:`diagnose` (:mod:`.diagnose`) runs them (one runner each,
:mod:`.runners`) with :class:`DiagnoseOptions` (:mod:`.options`), applies the verdict's rules
(:mod:`.rules`) and recommends a freeze depth (:mod:`.recommend`); the result is a
:class:`Diagnosis` (:mod:`.diagnosis`). Helpers stay importable from their modules.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "chat_alignment": ["chat_alignment"],
    "diagnose": ["diagnose"],
    "diagnosis": ["Diagnosis"],
    "format_probe": ["format_probe"],
    "grafting": ["grafting_curve"],
    "linear_probe": ["linear_probe"],
    "options": ["DiagnoseOptions", "RecoverySettings"],
    "recovery": ["run_recovery"],
    "residual_shift": ["residual_shift"],
})
