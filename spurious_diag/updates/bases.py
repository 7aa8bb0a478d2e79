"""The basis pass of one tensor: the top singular basis of every update, cached for every pair.

N updates need N SVDs, not N²: each (update, fused part) gets one :class:`SingularBasis`
(exact or accurate randomized SVD of the dense update, or exact from a LoRA update's factors),
which every pair that uses it shares.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..geometry import SingularBasis, intruder_dimensions, top_singular_basis
from ..io.checkpoint import Checkpoint
from .deltas import dense_delta, factored_delta
from .plan import AuditPlan
from .tensor import TensorContext, orient

__all__ = ["BasisKey", "update_bases"]

BasisKey = tuple[int, int]  # (position of the update in the plan, fused part)


def update_bases(ctx: TensorContext, plan: AuditPlan, deltas: Optional[list[torch.Tensor]], gram: torch.Tensor
                 ) -> tuple[dict[BasisKey, SingularBasis], dict[BasisKey, int]]:
    """Top singular basis per (update position, part), and intruder counts when asked.

    Args:
        ctx: the tensor.
        plan: the audit (sources, updates, options, device, working dtype).
        deltas: the dense updates kept by the Gram pass when the tensor was small enough
            (stored orientation); None forms each update again here, one at a time.
        gram: P×N×N squared norms and inner products of the updates (so the bases need not
            measure ‖ΔW‖² again).

    Returns:
        (bases, intruder counts), both keyed by (update position, part); bases on the CPU.
    """
    options, dtype, device = plan.options, plan.dtype, plan.device
    bases: dict[BasisKey, SingularBasis] = {}
    intruders: dict[BasisKey, int] = {}
    rank = options.rank if isinstance(options.rank, int) else options.max_rank
    energy = options.energy if options.rank == "energy" else None
    for u, update in enumerate(plan.updates):
        if update.factored:
            fu = factored_delta(update, plan.sources, ctx.name, dtype)
            for k, part in enumerate(ctx.parts):
                if fu is None:
                    continue
                piece = fu.take_rows(part.index)
                bases[(u, k)] = top_singular_basis(piece, rank, energy=energy, max_rank=options.max_rank)
            continue
        delta = deltas[u] if deltas is not None else dense_delta(update, plan.sources, ctx.name, dtype)
        oriented = orient(delta, ctx).to(device)
        if options.intruders:
            src, tgt = plan.sources[update.source], plan.sources[update.target]
            assert isinstance(src, Checkpoint) and isinstance(tgt, Checkpoint)
            before = orient(src[ctx.name].to(dtype), ctx).to(device)
            after = orient(tgt[ctx.name].to(dtype), ctx).to(device)
            for k, part in enumerate(ctx.parts):
                intruders[(u, k)] = intruder_dimensions(before[part.index], after[part.index]).count
            del before, after
        for k, part in enumerate(ctx.parts):
            piece = oriented[part.index]
            bases[(u, k)] = _to_cpu(top_singular_basis(
                piece, rank, energy=energy, max_rank=options.max_rank, seed=options.seed,
                total_energy=float(gram[k, u, u])))
        del delta, oriented
    return bases, intruders


def _to_cpu(b: SingularBasis) -> SingularBasis:
    if b.U.device.type == "cpu":
        return b
    return SingularBasis(b.U.cpu(), b.S.cpu(), b.Vh.cpu(), b.total_energy)
