"""The audit's streamed Gram pass over one tensor: update sizes and inner products.

Rows of the tensor are read in chunks from every checkpoint involved; for each
chunk the updates are formed side by side in one buffer, and the Frobenius
inner products ⟨ΔW_a, ΔW_b⟩ (per fused part) and ‖W_source‖² are accumulated
in float64, each chunk's sums being BLAS products in the working dtype over at
most 2¹⁶ elements (:func:`~spurious_diag.geometry.sizes.accumulated_products`).
The update sums double as the NaN/Inf check (every update subtracts the rows of its
checkpoints): only a non-finite sum sends a chunk through an element-wise look, which
zeroes the bad elements and records the checkpoint.

The dense updates are kept for the basis pass when they fit (two updates, or
all of them within one chunk budget), so that a tensor is read once. The same
pass measures the rounding noise each checkpoint's stored dtype puts on the
tensor (:mod:`.noise`), from which the noise floor of every update follows; that
measurement also gives ‖W_source‖².
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from ..geometry.sizes import accumulated_products
from ..io.checkpoint import Checkpoint
from .deltas import delta_rows
from .noise import NoiseAccumulator, NoiseStats
from .plan import Source, UpdatePlan, needed_checkpoints
from .tensor import TensorContext

__all__ = ["GramResult", "gram_pass"]


@dataclass
class GramResult:
    """What the Gram pass of one tensor measured.

    Attributes:
        gram: P×N×N float64 (P fused parts, N updates), ⟨ΔW_a, ΔW_b⟩ in squared units
            of the weights.
        source_sq: P×N float64, ‖W_source‖² of each update's source checkpoint, per part.
        finite: checkpoint index → whether its tensor is free of NaN/Inf (non-finite
            values count as 0 in ``gram`` and ``source_sq``).
        deltas: the N dense updates in stored orientation and working dtype when they
            were kept (see module docstring), else ``None``; factored updates are densified.
        noise: checkpoint index → the rounding noise of its stored values (:class:`~.noise.NoiseStats`,
            per part); empty when not measured.
    """

    gram: torch.Tensor
    source_sq: torch.Tensor
    finite: dict[int, bool]
    deltas: Optional[list[torch.Tensor]]
    noise: dict[int, NoiseStats] = field(default_factory=dict)


def gram_pass(ctx: TensorContext, sources: Sequence[Source], plans: Sequence[UpdatePlan], *, dtype: torch.dtype,
              chunk_bytes: int, noise: bool = True) -> GramResult:
    """Stream tensor ``ctx.name`` of every needed checkpoint in row chunks (stored orientation).

    Args:
        ctx: the tensor (stored shape, output axis, fused parts, Conv1D flag for densifying LoRA rows).
        sources: the audit's checkpoints and adapters; plans: its updates.
        dtype: working float dtype of the chunks.
        chunk_bytes: memory budget of one chunk (all checkpoints' rows and updates together).
        noise: also measure each checkpoint's rounding noise (``GramResult.noise``).
    """
    name, shape = ctx.name, ctx.shape
    part_ids = ctx.part_ids()
    n_parts, n_updates = _count_parts(part_ids), len(plans)
    gram = torch.zeros(n_parts, n_updates, n_updates, dtype=torch.float64)
    source_sq = torch.zeros(n_parts, n_updates, dtype=torch.float64)
    needed = needed_checkpoints(plans)
    finite = {k: True for k in needed}
    stored = shape or (1,)
    n_rows = stored[0]
    item = torch.empty((), dtype=dtype).element_size()
    row_bytes = item * max(1, math.prod(stored[1:]))
    lazy = all(sources[k].reads_rows_lazily(name) for k in needed)  # type: ignore[union-attr]
    per_row = row_bytes * (len(needed) + n_updates + 1)  # rows held at once
    chunk = max(1, chunk_bytes // per_row if lazy and len(stored) > 1 else n_rows)
    single = chunk >= n_rows
    keep = len(shape) > 0 and (single or n_updates * n_rows * row_bytes <= max(chunk_bytes, 2 * n_rows * row_bytes))
    # The updates of a chunk sit side by side in one buffer (N × rows), so that all their
    # inner products come from one pass of small matrix products over it.
    kept = torch.empty((n_updates, *stored), dtype=dtype) if keep else None
    n_cols = max(1, math.prod(stored[1:]))
    meters = {k: NoiseAccumulator(sources[k].info(name).dtype, n_rows, n_cols, part_ids, ctx.out_axis)  # type: ignore[union-attr]
              for k in needed} if noise else {}
    for start in range(0, n_rows, chunk):
        stop = min(n_rows, start + chunk)
        rows = {k: _load(sources[k], name, shape, start, stop, dtype) for k in needed}
        if kept is not None:
            deltas = kept[:, start:stop]
        else:
            deltas = torch.empty((n_updates, stop - start, *stored[1:]), dtype=dtype)
        chunk_gram = _chunk_gram(rows, deltas, sources, plans, ctx, part_ids, start, stop)
        if not bool(torch.isfinite(chunk_gram).all()):
            _zero_non_finite(rows, finite)
            chunk_gram = _chunk_gram(rows, deltas, sources, plans, ctx, part_ids, start, stop)
        gram += chunk_gram
        # ‖W‖² per part comes with the noise measurement where there is one
        squares = {k: meter.add(rows[k], start) for k, meter in meters.items()}
        for k in {p.source for p in plans}:
            if squares.get(k) is None:
                squares[k] = _part_inner(rows[k], rows[k], part_ids, ctx.out_axis, start, stop)
        del rows
        source_sq += torch.stack([squares[p.source] for p in plans], dim=1)  # type: ignore[misc]
    return GramResult(gram, source_sq, finite, list(kept.unbind(0)) if kept is not None else None,
                      {k: meter.finish() for k, meter in meters.items()})


def _load(source: Source, name: str, shape: tuple[int, ...], start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
    assert isinstance(source, Checkpoint)
    block = source.load_rows(name, start, stop) if shape else source[name].reshape(1)
    return block.to(dtype)


def _chunk_gram(rows: dict[int, torch.Tensor], deltas: torch.Tensor, sources: Sequence[Source],
                plans: Sequence[UpdatePlan], ctx: TensorContext, part_ids: torch.Tensor, start: int,
                stop: int) -> torch.Tensor:
    """Write the chunk's updates into ``deltas`` (N × rows); return their P×N×N Gram matrix (float64)."""
    name, transposed, out_axis = ctx.name, ctx.info.transposed, ctx.out_axis
    for u, plan in enumerate(plans):
        delta_rows(plan, sources, rows, name, start, stop, transposed, out=deltas[u])
    n_parts, n_updates = _count_parts(part_ids), len(plans)
    if n_parts == 1:
        flat = deltas.reshape(n_updates, -1)
        return accumulated_products(flat, flat).unsqueeze(0)
    gram = torch.zeros(n_parts, n_updates, n_updates, dtype=torch.float64)
    for a in range(n_updates):
        for b in range(a, n_updates):
            gram[:, a, b] = gram[:, b, a] = _part_inner(deltas[a], deltas[b], part_ids, out_axis, start, stop)
    return gram


def _zero_non_finite(rows: dict[int, torch.Tensor], finite: dict[int, bool]) -> None:
    """Record which checkpoints' rows hold NaN/Inf, and zero those elements."""
    for k, block in rows.items():
        if not bool(torch.isfinite(block).all()):
            finite[k] = False
            rows[k] = torch.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)


def _part_inner(x: torch.Tensor, y: torch.Tensor, part_ids: torch.Tensor, out_axis: int, start: int,
                stop: int) -> torch.Tensor:
    """Σ x·y over the elements of each part (x, y: rows start:stop of the stored tensor); P float64."""
    n_parts = _count_parts(part_ids)
    if n_parts == 1:
        return accumulated_products(x.reshape(1, -1), y.reshape(1, -1)).reshape(1)
    if x.dim() <= 1:
        per_out = (x * y).to(torch.float64).reshape(-1)
        ids = part_ids[start:stop] if out_axis == 0 else part_ids
    elif out_axis == 0:
        per_out = (x.reshape(x.shape[0], -1) * y.reshape(y.shape[0], -1)).sum(dim=1, dtype=torch.float64)
        ids = part_ids[start:stop]
    else:
        per_out = (x * y).sum(dim=0, dtype=torch.float64).reshape(-1)
        ids = part_ids
    out = torch.zeros(n_parts, dtype=torch.float64)
    return out.index_add_(0, ids, per_out)


def _count_parts(part_ids: torch.Tensor) -> int:
    return int(part_ids.max()) + 1 if part_ids.numel() else 1
