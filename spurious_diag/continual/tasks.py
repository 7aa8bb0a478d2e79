"""Tasks of a sequence, and when the runner evaluates and saves.

A :class:`Task` is data: its training records and named evaluation sets, one of them the
*primary* set (the task's accuracy in the accuracy matrix and the early-stop metric).
:class:`EvalSchedule` says when every task's evaluation sets are scored, when only the
early-stop metric is checked, and when weights are saved. How a task is trained is a
:class:`~spurious_diag.training.settings.TrainSettings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from ..errors import UsageError

if TYPE_CHECKING:
    from ..training.records import Record

__all__ = ["Task", "EvalSchedule"]


@dataclass(frozen=True)
class Task:
    """One task of a sequence.

    Attributes:
        name: unique within the sequence (used in column names: keep it short, e.g. ``task0``).
        train: training records (``{"prompt", "completion"}`` mappings or QA records).
        evals: evaluation sets by name (e.g. ``{"test": ..., "val": ...}``), each scored by
            greedy exact match (:func:`spurious_diag.training.evaluate_records`).
        primary: the evaluation set that is "the task's accuracy" (accuracy matrix, early
            stopping); default: the first of ``evals``.
    """

    name: str
    train: Sequence["Record"] = field(repr=False)
    evals: Mapping[str, Sequence["Record"]] = field(repr=False)
    primary: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise UsageError("a task needs a name")
        if not self.train:
            raise UsageError(f"task {self.name!r} has no training records")
        if not self.evals or any(not records for records in self.evals.values()):
            raise UsageError(f"task {self.name!r} needs at least one non-empty evaluation set")
        if not self.primary:
            object.__setattr__(self, "primary", next(iter(self.evals)))
        if self.primary not in self.evals:
            raise UsageError(f"task {self.name!r}: primary set {self.primary!r} is not one of {list(self.evals)}")


def _geometric(start: int, stop: int, ratio: float) -> list[int]:
    steps, value = [], float(start)
    while round(value) <= stop:
        if not steps or round(value) > steps[-1]:
            steps.append(int(round(value)))
        value *= ratio
    return steps


@dataclass(frozen=True)
class EvalSchedule:
    """When the runner evaluates and saves during one task (steps counted within the task).

    Full evaluations (every evaluation set of every task) happen at step 0, every
    ``dense_every`` steps up to ``dense_until``, every ``sparse_every`` steps after that, at
    the last step, and at the early-stop point. Between them the early-stop metric alone is
    checked every ``stop_check_every`` steps (0: only at full evaluations), so the stop is
    found at that granularity without paying for full evaluations.

    Checkpoints (when the runner is given a directory): step 0, every ``checkpoint_every``
    steps up to ``dense_until``, then geometrically (×``checkpoint_ratio``), the last step, and
    the early-stop point (saved by the runner when it is reached).

    >>> EvalSchedule(dense_every=10, dense_until=30, sparse_every=50).full_steps(120)
    [0, 10, 20, 30, 50, 100, 120]
    >>> EvalSchedule(dense_until=20, checkpoint_every=5, checkpoint_ratio=2.0).checkpoint_steps(100)
    [0, 5, 10, 15, 20, 40, 80, 100]
    """

    dense_every: int = 10
    dense_until: int = 200
    sparse_every: int = 50
    stop_check_every: int = 10
    checkpoint_every: int = 5
    checkpoint_ratio: float = 1.5

    def __post_init__(self) -> None:
        for name in ("dense_every", "sparse_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dense_until < 0 or self.stop_check_every < 0:
            raise UsageError("dense_until and stop_check_every must be >= 0")
        if self.checkpoint_ratio <= 1:
            raise UsageError(f"checkpoint_ratio must be > 1, got {self.checkpoint_ratio}")

    def full_steps(self, total: int) -> list[int]:
        """Steps of full evaluation in a task of ``total`` steps (not counting an early stop)."""
        dense = range(0, min(self.dense_until, total) + 1, self.dense_every)
        first_sparse = (self.dense_until // self.sparse_every + 1) * self.sparse_every
        sparse = range(first_sparse, total + 1, self.sparse_every)
        return sorted({*dense, *sparse, total})

    def stop_check_steps(self, total: int) -> list[int]:
        """Steps where the early-stop metric is checked (full evaluations included)."""
        checks = set(self.full_steps(total))
        if self.stop_check_every:
            checks.update(range(0, total + 1, self.stop_check_every))
        return sorted(checks)

    def checkpoint_steps(self, total: int) -> list[int]:
        """Steps whose weights are saved when checkpointing is on."""
        dense = list(range(0, min(self.dense_until, total) + 1, self.checkpoint_every))
        start = max(dense[-1], 1)
        later = _geometric(int(round(start * self.checkpoint_ratio)), total, self.checkpoint_ratio)
        return sorted({*dense, *later, total})
