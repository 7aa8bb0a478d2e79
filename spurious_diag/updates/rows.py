"""The rows of one tensor: one per update × fused part, one per pair of updates × part.

Sizes and cosines come from the Gram pass (``gram``: P×N×N inner products of the updates,
``source_sq``: P×N squared norms of their source weights); angles and overlaps from the cached
bases. A tensor that cannot be measured keeps its rows, with the reason in ``status``: no row
is ever dropped silently.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from ..geometry import SingularBasis, compare_bases, random_cosine_scale, random_overlap
from ..io.layer_map import ParamInfo
from ..io.orientation import Part
from .bases import BasisKey
from .gram import GramResult
from .plan import AuditPlan, UpdatePlan
from .tensor import TensorContext, part_shape

__all__ = ["UPDATE_COLUMNS", "PAIR_COLUMNS", "update_rows", "pair_rows", "skipped_update_row"]

UPDATE_COLUMNS = [
    "update", "from_ckpt", "to_ckpt", "name", "part", "layer", "module", "shape", "dtype",
    "fro", "rms", "rel", "rank", "energy_captured", "status",
]
PAIR_COLUMNS = [
    "update_a", "update_b", "name", "part", "layer", "module", "shape",
    "cosine", "cosine_random", "rank_a", "rank_b",
    "angle_mean_deg", "angle_min_deg", "overlap", "overlap_random",
    "angle_mean_deg_right", "angle_min_deg_right", "overlap_right", "overlap_random_right",
    "one_sided_mean_deg", "status",
]


def update_rows(ctx: TensorContext, plan: AuditPlan, measured: GramResult, bases: dict[BasisKey, SingularBasis],
                intruders: dict[BasisKey, int], status: str) -> list[dict[str, Any]]:
    """One row per update × part of ``ctx`` (:data:`UPDATE_COLUMNS`, plus ``intruders`` when asked).

    ``fro`` is NaN when the tensor holds non-finite values in a checkpoint (``status`` says which).
    """
    finite = all(measured.finite.values())
    gram, source_sq = measured.gram, measured.source_sq
    rows = []
    for u, update in enumerate(plan.updates):
        for k, part in enumerate(ctx.parts):
            shape = part_shape(ctx, part)
            numel = math.prod(shape)
            fro = math.sqrt(max(float(gram[k, u, u]), 0.0)) if finite else math.nan
            base_norm = math.sqrt(float(source_sq[k, u]))
            basis = bases.get((u, k))
            row = {
                "update": update.index, "from_ckpt": update.source, "to_ckpt": update.target,
                "name": ctx.name, "part": part.part, "layer": ctx.info.layer, "module": part.module,
                "shape": "x".join(map(str, shape)), "dtype": ctx.dtype_label,
                "fro": fro, "rms": fro / math.sqrt(numel) if numel else math.nan,
                "rel": fro / base_norm if base_norm > 0 else math.nan,
                "rank": basis.rank if basis is not None else None,
                "energy_captured": basis.energy_captured if basis is not None else math.nan,
                "status": status,
            }
            if plan.options.intruders:
                row["intruders"] = intruders.get((u, k))
            rows.append(row)
    return rows


def pair_rows(ctx: TensorContext, plan: AuditPlan, gram: torch.Tensor, bases: dict[BasisKey, SingularBasis],
              status: str) -> list[dict[str, Any]]:
    """One row per planned pair of updates × part of ``ctx`` (:data:`PAIR_COLUMNS`)."""
    pos = {update.index: i for i, update in enumerate(plan.updates)}
    rows = []
    for a, b in plan.pairs:
        ua, ub = pos[a], pos[b]
        for k, part in enumerate(ctx.parts):
            row = _pair_row(a, b, ctx, part, gram[k, ua, ub], gram[k, ua, ua], gram[k, ub, ub],
                            bases.get((ua, k)), bases.get((ub, k)), status)
            if not plan.options.angles and status == "ok":
                row["status"] = "angles not computed (norms only)"
            rows.append(row)
    return rows


def _pair_row(a: int, b: int, ctx: TensorContext, part: Part, inner: torch.Tensor, sq_a: torch.Tensor,
              sq_b: torch.Tensor, basis_a: Optional[SingularBasis], basis_b: Optional[SingularBasis],
              status: str) -> dict[str, Any]:
    shape = part_shape(ctx, part)
    norm = math.sqrt(float(sq_a) * float(sq_b))
    row: dict[str, Any] = {
        "update_a": a, "update_b": b, "name": ctx.name, "part": part.part, "layer": ctx.info.layer,
        "module": part.module, "shape": "x".join(map(str, shape)),
        "cosine": float(inner) / norm if norm > 0 and status == "ok" else math.nan,
        "cosine_random": random_cosine_scale(math.prod(shape)),
        "status": status,
    }
    if basis_a is None or basis_b is None or basis_a.rank == 0 or basis_b.rank == 0:
        if status == "ok":
            row["status"] = "zero update: no subspace" if (basis_a is not None and basis_b is not None) else status
        row.update(rank_a=basis_a.rank if basis_a is not None else None, rank_b=basis_b.rank if basis_b is not None else None)
        return row
    row.update(rank_a=basis_a.rank, rank_b=basis_b.rank)
    for side, suffix in (("left", ""), ("right", "_right")):
        compared = compare_bases(basis_a, basis_b, side)
        theta = torch.rad2deg(compared.angles.double())
        row[f"angle_mean_deg{suffix}"] = float(theta.mean())
        row[f"angle_min_deg{suffix}"] = float(theta.min())
        row[f"overlap{suffix}"] = compared.overlap
        row[f"overlap_random{suffix}"] = random_overlap(basis_a.vectors(side).shape[0], basis_a.rank, basis_b.rank)
        if side == "left":
            row["one_sided_mean_deg"] = float(torch.rad2deg(compared.one_sided.double()).mean())
    return row


def skipped_update_row(update: UpdatePlan, info: ParamInfo, reason: str) -> dict[str, Any]:
    """The row of a tensor that could not be aligned across the checkpoints (``status`` says why)."""
    return {
        "update": update.index, "from_ckpt": update.source, "to_ckpt": update.target, "name": info.name, "part": "",
        "layer": info.layer, "module": info.module, "shape": "", "dtype": "", "fro": math.nan, "rms": math.nan,
        "rel": math.nan, "rank": None, "energy_captured": math.nan, "status": f"skipped: {reason}",
    }
