"""What the demo runs: :class:`DemoConfig` (standard library and the recipe only, so that
``spurious-diag demo --help`` builds its flags from it without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import UsageError
from ..probes.options import RecoverySettings
from .recipe import BiographyRecipe
from .view_settings import ViewSettings

__all__ = ["DemoConfig", "DEFAULT_RECOVERY_CANDIDATES"]

# Recovery settings compared on the validation people (DESIGN.md §5: the control's result
# depends strongly on the learning rate, so the choice is measured, not assumed).
DEFAULT_RECOVERY_CANDIDATES: tuple[RecoverySettings, ...] = tuple(
    RecoverySettings(lr=lr, steps=steps) for lr in (1e-4, 3e-4) for steps in (20, 40))


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs.

    Attributes:
        recipe: the Biography training and evaluation settings.
        seed: the Task 1 data order (and the probes' seed).
        freeze_ks: the Freeze(k) sweep.
        recovery_ns: recovery example counts.
        recovery_candidates: recovery settings compared on the validation people.
        jobs: worker processes for the Task 1 runs (one thread each; 1 runs them in-process).
        keep_models: save the Task 0, SEQ-dip and SEQ-end models under ``models/``.
        probe_people: score the probes on the first this many people of each split (None: all).
        format_candidates: the format probe ranks each true value among this many candidates.
        views: how much of the paper's views (forgetting maps, recovery curve, landscapes, ...) to compute.
    """

    recipe: BiographyRecipe = field(default=BiographyRecipe(), metadata={"cli": False})
    seed: int = field(default=0, metadata={"help": "seed of the Task 1 data order and the probes"})
    freeze_ks: tuple[int, ...] = field(default=(0, 1, 2, 3), metadata={"cli": False})
    recovery_ns: tuple[int, ...] = field(default=(10, 50, 100), metadata={"cli": False})
    recovery_candidates: tuple[RecoverySettings, ...] = field(default=DEFAULT_RECOVERY_CANDIDATES,
                                                              metadata={"cli": False})
    jobs: int = field(default=2, metadata={"help": "worker processes for the Task 1 runs"})
    keep_models: bool = field(default=True, metadata={"cli": False})
    probe_people: Optional[int] = field(default=None, metadata={"cli": False})
    # 10 rather than diagnose's 20 halves the ranking's cost and leaves the verdict alone (it reads
    # exact match); chance top-1 is then 0.1.
    format_candidates: int = field(default=10, metadata={"cli": False})
    views: ViewSettings = field(default=ViewSettings(), metadata={"cli": False})

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise UsageError(f"jobs must be >= 1, got {self.jobs}")
        if not self.freeze_ks or any(k < 0 for k in self.freeze_ks):
            raise UsageError(f"freeze_ks must be depths >= 0, got {list(self.freeze_ks)}")

    @classmethod
    def quick(cls, jobs: int = 1) -> "DemoConfig":
        """A smoke-test configuration (about a minute): every stage runs, the numbers mean little."""
        recipe = BiographyRecipe(task0_steps=40, task1_steps=40, dip_window=20, dense_every=10, sparse_every=20,
                                 stop_check_every=10, checkpoint_every=10)
        return cls(recipe=recipe, freeze_ks=(0, 1), recovery_ns=(10, 50),
                   recovery_candidates=(RecoverySettings(lr=1e-4, steps=4),), jobs=jobs, keep_models=False,
                   probe_people=30,
                   views=ViewSettings(map_people=10, probe_people=30, landscape_size=5, landscape_records=8,
                                      feature_people=10, fisher_examples=64))

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "seed": self.seed, "freeze_ks": list(self.freeze_ks),
                "recovery_ns": list(self.recovery_ns),
                "recovery_candidates": [{"lr": c.lr, "steps": c.steps} for c in self.recovery_candidates],
                "jobs": self.jobs, "probe_people": self.probe_people, "format_candidates": self.format_candidates,
                "views": self.views.to_dict()}
