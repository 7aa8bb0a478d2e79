"""How much of the paper's views the demo computes: :class:`ViewSettings` (standard library only,
so that ``spurious-diag demo --help`` builds its flags without importing torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

from ..errors import UsageError

__all__ = ["ViewSettings"]


@dataclass(frozen=True)
class ViewSettings:
    """How much of each view the demo computes (the costs are per checkpoint or grid point).

    Attributes:
        map_people: held-out Task 0 people the forgetting map and the recovery curve score
            (6 records each; the standard error of an accuracy near 0.5 is about 3 points at 40 people).
        probe_every: the probe map's step spacing over the chain's evenly spaced start (every
            checkpoint after it).
        probe_people: held-out people the probe map reads (its own person-disjoint split).
        landscape_size: grid nodes per axis (at least 21).
        landscape_records: records per task scoring each grid point.
        replay: the REPLAY setting of the landscape's third method (the competitors benchmark's).
        window_ratio: the early window's start as a fraction of its end (the paper's 100 / 150).
        feature_people: held-out people of the feature view.
        fisher_examples: Task 0 training records of the Fisher (None: all).
    """

    map_people: int = 40
    probe_every: int = 40
    probe_people: int = 60
    landscape_size: int = 21
    landscape_records: int = 24
    replay: str = "REPLAY(0.1)"
    window_ratio: float = 2 / 3
    feature_people: int = 60
    fisher_examples: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("map_people", "probe_every", "probe_people", "landscape_records", "feature_people"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.landscape_size < 3:
            raise UsageError(f"landscape_size must be >= 3, got {self.landscape_size}")
        if not 0.0 <= self.window_ratio < 1.0:
            raise UsageError(f"window_ratio must be in [0, 1), got {self.window_ratio}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
