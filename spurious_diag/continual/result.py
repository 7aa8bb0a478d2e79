"""What a continual run measured: :class:`SequenceResult`, its tidy tables and their columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from ..freeze.freezing import FreezeReport
    from ..freeze.verify import FrozenCheck

__all__ = ["CURVE_COLUMNS", "ATTRIBUTE_COLUMNS", "POINT_COLUMNS", "SequenceResult"]

CURVE_COLUMNS = ["method", "seed", "task_index", "task", "step", "global_step", "full",
                 "eval_task", "eval_set", "primary", "exact_match", "first_token_acc"]
ATTRIBUTE_COLUMNS = ["method", "seed", "task_index", "task", "step", "global_step", "eval_task", "eval_set",
                     "attribute", "n", "exact_match", "first_token_acc", "first_token_prob"]
POINT_COLUMNS = ["method", "seed", "task_index", "task", "point", "step", "global_step", "reached"]


@dataclass
class SequenceResult:
    """Everything a :func:`~.runner.run_sequence` call measured.

    Attributes:
        method: the method's label; seed: the run's seed.
        task_names: names of all tasks of the sequence, in order; first_task: the first one
            trained in this run.
        curve: one row per evaluation × set (:data:`CURVE_COLUMNS`). ``step`` counts within
            the task being trained (``task``, ``task_index``); ``full`` is False for rows of
            an early-stop check (the trained task's primary set alone); ``primary`` marks a
            task's primary set.
        per_attribute: per-attribute scores of full evaluations (:data:`ATTRIBUTE_COLUMNS`).
        points: per trained task, the steps of its ``start``, ``early_stop`` and ``end`` points
            (:data:`POINT_COLUMNS`); ``reached`` is False when the early-stop criterion was
            never met (the point is then the end) or the task had none.
        losses: training loss per logging window (``task_index``, ``task``, ``step``, ``loss``,
            ``learning_rate``). After a resume, the window that spans the kill averages only the
            steps trained after it (the other tables are those of an uninterrupted run).
        freeze_reports / frozen_checks: per task index, what Freeze(k) froze and the
            bit-identity check after the task.
        fisher_sums: per task index, Σ F of EWC's running Fisher after that task.
        runtime_s: wall-clock seconds per task index (training and evaluation; for a task
            continued after a kill, the part after it).
    """

    method: str
    seed: int
    task_names: list[str]
    first_task: int
    curve: pd.DataFrame = field(repr=False)
    per_attribute: pd.DataFrame = field(repr=False)
    points: pd.DataFrame = field(repr=False)
    losses: pd.DataFrame = field(repr=False)
    freeze_reports: dict[int, FreezeReport] = field(default_factory=dict, repr=False)
    frozen_checks: dict[int, FrozenCheck] = field(default_factory=dict, repr=False)
    fisher_sums: dict[int, float] = field(default_factory=dict)
    runtime_s: dict[int, float] = field(default_factory=dict)
