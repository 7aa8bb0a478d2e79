"""Continual learning: train a model on tasks one after another with a method, and compare methods.

A sequence is a list of :class:`Task` s (training records and named evaluation sets,
:mod:`.tasks`); a :class:`Method` (:mod:`.methods`) is SEQ, Freeze(k), REPLAY(f) (:mod:`.replay`)
or EWC(λ) (:mod:`.ewc`). :func:`run_sequence` (:mod:`.runner`) trains one model through the tasks
with the training engine, evaluating densely early in each task and sparsely later
(:mod:`.evaluation`), marking the early-stop point, and optionally saving ``checkpoint-N``
folders that ``spurious-diag audit`` reads; a killed run continues (:mod:`.resume`). Results are
a :class:`SequenceResult` (:mod:`.result`); :mod:`.tables` turns them into the accuracy matrix,
backward transfer, per-run summaries and means over seeds.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "methods": ["Method"],
    "result": ["SequenceResult"],
    "runner": ["SequenceOptions", "run_sequence"],
    "tables": ["accuracy_matrix", "backward_transfer", "run_summary"],
    "tasks": ["EvalSchedule", "Task"],
})
