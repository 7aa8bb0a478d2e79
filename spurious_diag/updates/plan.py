"""Plan an audit: which updates a list of checkpoints defines, and which pairs of them to compare.

An *update* is the change of every weight between two checkpoints,
ΔW = W_target − W_source, or a LoRA adapter's scale · B @ A (kept factored).
In a chain (the default) update *i* is CKPT_i − CKPT_{i−1}; in base mode every
update starts at CKPT_0. A LoRA adapter's update is always relative to the
base model it was trained on, which must be CKPT_0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch

from ..errors import UsageError
from ..io.adapter import LoraAdapter
from ..io.checkpoint import Checkpoint
from .options import PAIR_SCHEMES, AuditOptions

__all__ = ["Source", "UpdatePlan", "AuditPlan", "plan_updates", "plan_pairs", "needed_checkpoints"]

Source = Union[Checkpoint, LoraAdapter]


@dataclass(frozen=True)
class UpdatePlan:
    """Update ``index`` (1-based) goes from checkpoint ``source`` to checkpoint ``target``."""

    index: int
    source: int
    target: int
    factored: bool = False


@dataclass(frozen=True)
class AuditPlan:
    """Everything one audit reads, fixed before the first tensor is read.

    Attributes:
        sources: the opened checkpoints and adapters (CKPT_0 first).
        updates: the updates they define; pairs: the (a, b) update indices compared.
        options: the :class:`~.options.AuditOptions`.
        device: where SVDs run; dtype: the working float dtype.
    """

    sources: Sequence[Source]
    updates: Sequence[UpdatePlan]
    pairs: Sequence[tuple[int, int]]
    options: AuditOptions
    device: torch.device
    dtype: torch.dtype


def plan_updates(sources: Sequence[Source], base: bool = False) -> list[UpdatePlan]:
    """The updates defined by ``sources``: a chain, or every one from ``sources[0]`` when ``base``.

    Raises:
        UsageError: fewer than two sources, or CKPT_0 is an adapter.
    """
    if len(sources) < 2:
        raise UsageError(f"an audit needs at least two checkpoints, got {len(sources)}")
    if isinstance(sources[0], LoraAdapter):
        raise UsageError("CKPT_0 must be a full model (the base that LoRA adapters apply to)", sources[0].path)
    plans = []
    for i in range(1, len(sources)):
        if isinstance(sources[i], LoraAdapter):
            plans.append(UpdatePlan(i, 0, i, factored=True))
        else:
            plans.append(UpdatePlan(i, 0 if base else _previous_full(sources, i), i))
    return plans


def _previous_full(sources: Sequence[Source], i: int) -> int:
    j = i - 1
    while isinstance(sources[j], LoraAdapter):
        j -= 1
    return j


def plan_pairs(n_updates: int, scheme: str = "all") -> list[tuple[int, int]]:
    """Pairs (a, b) of 1-based update indices, a < b, to compare.

    ``all``: every pair; ``consecutive``: (i, i+1); ``trajectory``: consecutive pairs
    plus every update against the first, for a run of Trainer checkpoints.

    >>> plan_pairs(4, "trajectory")
    [(1, 2), (1, 3), (1, 4), (2, 3), (3, 4)]
    """
    if scheme not in PAIR_SCHEMES:
        raise UsageError(f"pairs must be one of {PAIR_SCHEMES}, got {scheme!r}")
    ids = range(1, n_updates + 1)
    if scheme == "all":
        return [(a, b) for a in ids for b in ids if a < b]
    pairs = {(a, a + 1) for a in ids if a + 1 <= n_updates}
    if scheme == "trajectory":
        pairs |= {(1, b) for b in ids if b > 1}
    return sorted(pairs)


def needed_checkpoints(plans: Sequence[UpdatePlan]) -> list[int]:
    """Indices of the full checkpoints whose weights the updates read."""
    needed = set()
    for p in plans:
        needed.add(p.source)
        if not p.factored:
            needed.add(p.target)
    return sorted(needed)
