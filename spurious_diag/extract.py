"""Extract: which updates a list of checkpoints defines, and each update of one tensor.

An *update* is the change of every weight between two checkpoints,
ΔW = W_target − W_source, or a LoRA adapter's scale · B @ A (kept factored).
In a chain (the default) update *i* is CKPT_i − CKPT_{i−1}; in base mode every
update starts at CKPT_0. A LoRA adapter's update is always relative to the
base model it was trained on, which must be CKPT_0.

Tensors are read one at a time (or a few rows at a time) from the lazy
checkpoints; nothing here holds a whole model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from .errors import MismatchError, UsageError
from .geometry import FactoredUpdate
from .io.adapter import LoraAdapter
from .io.checkpoint import Checkpoint

__all__ = ["Source", "UpdatePlan", "plan_updates", "plan_pairs", "PAIR_SCHEMES", "delta_rows", "dense_delta", "factored_delta"]

Source = Union[Checkpoint, LoraAdapter]
PAIR_SCHEMES = ("all", "consecutive", "trajectory")


@dataclass(frozen=True)
class UpdatePlan:
    """Update ``index`` (1-based) goes from checkpoint ``source`` to checkpoint ``target``."""

    index: int
    source: int
    target: int
    factored: bool = False


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


def delta_rows(
    plan: UpdatePlan, sources: Sequence[Source], rows: dict[int, torch.Tensor], name: str, start: int, stop: int,
    transposed: bool, out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Rows ``start:stop`` (stored first axis) of update ``plan`` for tensor ``name``.

    ``rows`` maps checkpoint index → the same rows of that checkpoint, already loaded
    in the working dtype. A factored update densifies only these rows. With ``out``
    (a tensor of the rows' shape and dtype) the result is written there.
    """
    if not plan.factored:
        return torch.sub(rows[plan.target], rows[plan.source], out=out)
    adapter = sources[plan.target]
    assert isinstance(adapter, LoraAdapter)
    like = rows[plan.source]
    if name not in adapter.factors:
        block = torch.zeros_like(like)
    else:
        B, A, scale = adapter.factor_tensors(name)
        B, A = B.to(like.dtype), A.to(like.dtype)
        # stored orientation: (out, in) = B @ A, or its transpose for a Conv1D weight
        block = (scale * ((A.mT[start:stop] @ B.mT) if transposed else (B[start:stop] @ A))).reshape(like.shape)
    return block if out is None else out.copy_(block)


def dense_delta(plan: UpdatePlan, sources: Sequence[Source], name: str, dtype: torch.dtype) -> torch.Tensor:
    """The whole update of ``name`` in stored orientation, as ``dtype``; at most two tensors in memory."""
    target, source = sources[plan.target], sources[plan.source]
    assert isinstance(target, Checkpoint) and isinstance(source, Checkpoint)
    delta = target[name].to(dtype)
    before = source[name]
    if before.shape != delta.shape:
        raise MismatchError(f"shape {tuple(before.shape)} in {source.path} but {tuple(delta.shape)} in {target.path}", target.path, name)
    delta.sub_(before)  # promotes bf16/fp16 ``before`` on the fly: no second full-size copy
    return delta


def factored_delta(plan: UpdatePlan, sources: Sequence[Source], name: str, dtype: torch.dtype) -> FactoredUpdate | None:
    """A LoRA update of ``name`` in (out, in) orientation, or ``None`` when the adapter leaves it alone."""
    adapter = sources[plan.target]
    assert isinstance(adapter, LoraAdapter)
    if name not in adapter.factors:
        return None
    B, A, scale = adapter.factor_tensors(name)
    return FactoredUpdate(B.to(dtype), A.to(dtype), scale)
