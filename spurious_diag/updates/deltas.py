"""One update of one tensor: rows of it, all of it, or its LoRA factors.

Tensors are read one at a time (or a few rows at a time) from the lazy
checkpoints; nothing here holds a whole model.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..errors import MismatchError
from ..geometry import FactoredUpdate
from ..io.adapter import LoraAdapter
from ..io.checkpoint import Checkpoint
from .plan import Source, UpdatePlan

__all__ = ["delta_rows", "dense_delta", "factored_delta"]


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
