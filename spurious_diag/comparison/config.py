"""What ``spurious-diag compare`` runs: :class:`CompareConfig` (standard library and the recipe only,
so that ``--help`` builds its flags without importing torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ..biography.recipe import BiographyRecipe
from ..errors import UsageError

__all__ = ["CompareConfig", "DEFAULT_METHODS"]

DEFAULT_METHODS = "SEQ,Freeze,REPLAY(0.1),EWC,TaskVector,LAMOL(0.25),GP"


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"seeds must be comma-separated integers, got {text!r}") from None
    return seeds


@dataclass(frozen=True)
class CompareConfig:
    """A comparison of continual-learning methods on the Biography tasks.

    Attributes:
        methods: the ``--methods`` string (:func:`~.spec.parse_methods`).
        tasks: new tasks after Task 0 (1..5); every task but the last ends at its early-stop
            point, and the next starts from there.
        seeds: seeds of the new tasks' data order; the first is the *selection seed*, on whose
            runs every free setting is chosen (on the Task 0 validation people).
        tolerance: a setting is eligible when its last task's exact match at early stop is at
            least SEQ's (same seed) minus this.
        recipe: training and evaluation settings (Task 0 and every new task).
        dense_every: Task 0 evaluation period (steps) in each new task's dip window (the
            recipe's, unless given).
        pseudo_ratio: LAMOL's pseudo-samples per training record of a new task.
        fisher_max_examples: cap on the examples of each EWC Fisher (None: all).
        base_dir: the Biography base model (None: the shipped one).
        seq_checkpoints: keep the weight-only checkpoints of SEQ's last task on the selection seed
            (``work/runs/seq-s<seed>/checkpoints/<task>``), e.g. for ``diagnose``; Task Vector keeps every
            seed's anyway.
    """

    methods: str = field(default=DEFAULT_METHODS, metadata={
        "help": "comma-separated methods; a bare name or alternatives a|b|c are chosen on the Task 0 validation "
                "people, e.g. 'SEQ,Freeze,REPLAY(0.1),EWC(1e7|1e8),TaskVector,LAMOL(0.25),GP(20-50)'",
        "metavar": "LIST"})
    tasks: int = field(default=1, metadata={"help": "new tasks after Task 0 (1..5)"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={
        "help": "comma-separated seeds of the new tasks' data order (settings are chosen on the first)",
        "parse": _seeds, "metavar": "LIST"})
    tolerance: float = field(default=0.10, metadata={
        "help": "a setting is eligible when its last task at early stop is within this of SEQ's"})
    recipe: BiographyRecipe = field(default=BiographyRecipe(), metadata={"cli": False})
    dense_every: Optional[int] = field(default=None, metadata={
        "help": "Task 0 evaluation period (steps) in the dip window of each new task (default: the recipe's 10)"})
    pseudo_ratio: float = field(default=0.2, metadata={"help": "LAMOL's pseudo-samples per new-task record"})
    fisher_max_examples: Optional[int] = field(default=None, metadata={"cli": False})
    base_dir: Optional[str] = field(default=None, metadata={
        "flag": "--base", "help": "Biography base model directory (default: the shipped one)", "metavar": "DIR"})
    seq_checkpoints: bool = field(default=False, metadata={
        "help": "keep SEQ's checkpoints of the last task on the selection seed (to diagnose them)"})

    def __post_init__(self) -> None:
        if not 1 <= self.tasks <= 5:
            raise UsageError(f"tasks must be 1..5, got {self.tasks}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"seeds must be distinct and at least one, got {list(self.seeds)}")
        if not 0 <= self.tolerance <= 1:
            raise UsageError(f"tolerance must be in [0, 1], got {self.tolerance}")
        if self.dense_every is not None and self.dense_every < 1:
            raise UsageError(f"dense_every must be >= 1, got {self.dense_every}")
        if not 0 <= self.pseudo_ratio <= 1:
            raise UsageError(f"pseudo_ratio must be in [0, 1], got {self.pseudo_ratio}")
        from .spec import parse_methods  # imports torch: only when a comparison is configured, not for --help

        parse_methods(self.methods)

    @property
    def selection_seed(self) -> int:
        return self.seeds[0]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seeds"] = list(self.seeds)
        return data
