"""Sequential fine-tuning with continual-learning methods, and the tables that compare them.

A sequence is a list of :class:`Task` s (training records and named evaluation sets); a
:class:`Method` is SEQ, Freeze(k), REPLAY(f) or EWC(λ). :func:`run_sequence` trains one model
through the tasks, evaluating densely early in each task and sparsely later, marking the
early-stop point, verifying frozen tensors and optionally saving ``checkpoint-N`` folders that
``spurious-diag audit`` reads. :mod:`.tables` turns results into the accuracy matrix, backward
transfer, per-run summaries and means over seeds.

The Biography benchmark (``benchmarks/bench_biography.py``) runs it on
:func:`biography_tasks`.
"""

from .ewc import EwcPenalty, FisherDiagonal, diagonal_fisher
from .methods import METHOD_KINDS, Method, parse_method
from .replay import replay_count, replay_mix
from .runner import ATTRIBUTE_COLUMNS, CURVE_COLUMNS, POINT_COLUMNS, SequenceResult, run_sequence
from .tables import (SUMMARY_POINTS, accuracy_matrix, attribute_table, backward_transfer, mean_over_seeds,
                     run_summary, write_tables)
from .tasks import EvalSchedule, Task, TrainSettings, biography_tasks

__all__ = [
    "Method",
    "METHOD_KINDS",
    "parse_method",
    "Task",
    "TrainSettings",
    "EvalSchedule",
    "biography_tasks",
    "run_sequence",
    "SequenceResult",
    "CURVE_COLUMNS",
    "ATTRIBUTE_COLUMNS",
    "POINT_COLUMNS",
    "replay_count",
    "replay_mix",
    "FisherDiagonal",
    "diagonal_fisher",
    "EwcPenalty",
    "accuracy_matrix",
    "backward_transfer",
    "run_summary",
    "attribute_table",
    "mean_over_seeds",
    "write_tables",
    "SUMMARY_POINTS",
]
