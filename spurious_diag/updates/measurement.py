"""What the audit measured of one tensor: the record its rows are written from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..geometry import SingularBasis
from .floors import UpdateNoise
from .gram import GramResult

__all__ = ["BasisKey", "TensorMeasurement"]

BasisKey = tuple[int, int]  # (position of the update in the plan, fused part)


@dataclass
class TensorMeasurement:
    """Everything the audit measured of one tensor, from which its rows are written.

    Attributes:
        gram: the Gram pass (inner products, source norms, finiteness).
        status: the tensor's status (``ok``, or why nothing could be measured).
        noise: the rounding noise of each (update position, part); empty without a noise floor.
        update_status: (update position, part) → why that update is not measured beyond its size
            (below the noise floor); absent when it is.
        bases, intruders: per (update position, part), when computed.
        paper_bases: per (update position, part), the paper's 99%-energy basis (``--paper-angles``).
    """

    gram: GramResult
    status: str
    noise: dict[BasisKey, UpdateNoise] = field(default_factory=dict)
    update_status: dict[BasisKey, str] = field(default_factory=dict)
    bases: dict[BasisKey, SingularBasis] = field(default_factory=dict)
    intruders: dict[BasisKey, int] = field(default_factory=dict)
    paper_bases: dict[BasisKey, torch.Tensor] = field(default_factory=dict)

    def fro(self, key: BasisKey) -> float:
        """‖ΔW‖_F of (update position, part); NaN when a checkpoint holds non-finite values."""
        u, k = key
        if not all(self.gram.finite.values()):
            return math.nan
        return math.sqrt(max(float(self.gram.gram[k, u, u]), 0.0))

    def status_of(self, key: BasisKey) -> str:
        """The status of one update's row: the tensor's, else the update's own, else ``ok``."""
        if self.status != "ok":
            return self.status
        return self.update_status.get(key, "ok")
