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
from ..geometry.paper import paper_basis, paper_orientation
from .deltas import dense_delta, factored_delta
from .measurement import BasisKey, TensorMeasurement
from .plan import AuditPlan
from .tensor import TensorContext, orient, part_shape

__all__ = ["update_bases"]


def update_bases(ctx: TensorContext, plan: AuditPlan, m: TensorMeasurement,
                 deltas: Optional[list[torch.Tensor]]) -> None:
    """Fill ``m.bases`` (top singular basis per (update position, part)), ``m.intruders`` and
    ``m.paper_bases`` when asked.

    Args:
        ctx: the tensor.
        plan: the audit (sources, updates, options, device, working dtype).
        m: the measurement so far: its Gram pass (‖ΔW‖² of each update, so the bases need not
            measure it again), its noise (directions below each update's noise edge are dropped),
            and its update statuses (an update below the noise floor gets no basis).
        deltas: the dense updates kept by the Gram pass when the tensor was small enough
            (stored orientation); None forms each update again here, one at a time.

    Bases are on the CPU.
    """
    options, dtype, device = plan.options, plan.dtype, plan.device
    rank = options.rank if isinstance(options.rank, int) else options.max_rank
    energy = options.energy if options.rank == "energy" else None
    gram = m.gram.gram

    def floor(key: BasisKey) -> float:
        return m.noise[key].edge if key in m.noise else 0.0

    def wanted(key: BasisKey) -> bool:
        return key not in m.update_status

    for u, update in enumerate(plan.updates):
        if not options.paper_angles and not any(wanted((u, k)) for k in range(len(ctx.parts))):
            continue
        if update.factored:
            fu = factored_delta(update, plan.sources, ctx.name, dtype)
            for k, part in enumerate(ctx.parts):
                if fu is None:  # the adapter leaves this tensor alone: a zero update
                    rows, cols = part_shape(ctx, part)
                    m.bases[(u, k)] = SingularBasis(torch.zeros(rows, 0, dtype=dtype), torch.zeros(0, dtype=dtype),
                                                    torch.zeros(0, cols, dtype=dtype), 0.0)
                    continue
                piece = fu.take_rows(part.index)
                if wanted((u, k)):
                    m.bases[(u, k)] = top_singular_basis(piece, rank, energy=energy, max_rank=options.max_rank,
                                                         noise_floor=floor((u, k)))
                if options.paper_angles:
                    m.paper_bases[(u, k)] = paper_basis(paper_orientation(piece.to_dense(), part.module)).cpu()
            continue
        delta = deltas[u] if deltas is not None else dense_delta(update, plan.sources, ctx.name, dtype)
        oriented = orient(delta, ctx).to(device)
        if options.intruders:
            src, tgt = plan.sources[update.source], plan.sources[update.target]
            assert isinstance(src, Checkpoint) and isinstance(tgt, Checkpoint)
            before = orient(src[ctx.name].to(dtype), ctx).to(device)
            after = orient(tgt[ctx.name].to(dtype), ctx).to(device)
            for k, part in enumerate(ctx.parts):
                m.intruders[(u, k)] = intruder_dimensions(before[part.index], after[part.index]).count
            del before, after
        for k, part in enumerate(ctx.parts):
            piece = oriented[part.index]
            if wanted((u, k)):
                m.bases[(u, k)] = _to_cpu(top_singular_basis(
                    piece, rank, energy=energy, max_rank=options.max_rank, seed=options.seed,
                    total_energy=float(gram[k, u, u]), noise_floor=floor((u, k))))
            if options.paper_angles:
                m.paper_bases[(u, k)] = paper_basis(paper_orientation(piece, part.module)).cpu()
        del delta, oriented


def _to_cpu(b: SingularBasis) -> SingularBasis:
    if b.U.device.type == "cpu":
        return b
    return SingularBasis(b.U.cpu(), b.S.cpu(), b.Vh.cpu(), b.total_energy)
