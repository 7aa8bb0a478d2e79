"""The rows of one tensor: one per update × fused part, one per pair of updates × part.

Sizes and cosines come from the Gram pass (inner products of the updates, squared norms of
their source weights), ``noise_fro`` and ``snr`` from the rounding noise of the stored
checkpoints (:mod:`.floors`), angles and overlaps from the cached bases. A tensor or an update
that cannot be measured keeps its rows, with the reason in ``status``: no row is ever dropped
silently, and an update below the noise floor reports no angle.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from ..geometry import SingularBasis, compare_bases, one_sided_angles, random_cosine_scale, random_overlap
from ..io.layer_map import ParamInfo
from ..io.orientation import Part
from .measurement import TensorMeasurement
from .plan import AuditPlan, UpdatePlan
from .tensor import TensorContext, part_shape

__all__ = ["UPDATE_COLUMNS", "PAIR_COLUMNS", "PAPER_COLUMNS", "update_rows", "pair_rows", "skipped_update_row"]

UPDATE_COLUMNS = [
    "update", "from_ckpt", "to_ckpt", "name", "part", "layer", "module", "shape", "dtype",
    "fro", "rms", "rel", "noise_fro", "snr", "rank", "energy_captured", "status",
]
PAIR_COLUMNS = [
    "update_a", "update_b", "name", "part", "layer", "module", "shape",
    "cosine", "cosine_random", "rank_a", "rank_b",
    "angle_mean_deg", "angle_min_deg", "overlap", "overlap_random",
    "angle_mean_deg_right", "angle_min_deg_right", "overlap_right", "overlap_random_right",
    "one_sided_mean_deg", "status",
]
# With ``--paper-angles``: the official code's weight-view quantity (:mod:`spurious_diag.geometry.paper`).
PAPER_COLUMNS = ["paper_rank_a", "paper_rank_b", "paper_angle_mean_deg"]


def update_rows(ctx: TensorContext, plan: AuditPlan, m: TensorMeasurement) -> list[dict[str, Any]]:
    """One row per update × part of ``ctx`` (:data:`UPDATE_COLUMNS`, plus ``intruders`` when asked)."""
    rows = []
    for u, update in enumerate(plan.updates):
        for k, part in enumerate(ctx.parts):
            shape = part_shape(ctx, part)
            numel = math.prod(shape)
            fro = m.fro((u, k))
            base_norm = math.sqrt(float(m.gram.source_sq[k, u]))
            basis = m.bases.get((u, k))
            noise = m.noise.get((u, k))
            row = {
                "update": update.index, "from_ckpt": update.source, "to_ckpt": update.target,
                "name": ctx.name, "part": part.part, "layer": ctx.info.layer, "module": part.module,
                "shape": "x".join(map(str, shape)), "dtype": ctx.dtype_label,
                "fro": fro, "rms": fro / math.sqrt(numel) if numel else math.nan,
                "rel": fro / base_norm if base_norm > 0 else math.nan,
                "noise_fro": noise.fro if noise is not None else math.nan,
                "snr": noise.snr(fro) if noise is not None else math.nan,
                "rank": basis.rank if basis is not None else None,
                "energy_captured": basis.energy_captured if basis is not None else math.nan,
                "status": m.status_of((u, k)),
            }
            if plan.options.intruders:
                row["intruders"] = m.intruders.get((u, k))
            rows.append(row)
    return rows


def pair_rows(ctx: TensorContext, plan: AuditPlan, m: TensorMeasurement) -> list[dict[str, Any]]:
    """One row per planned pair of updates × part of ``ctx`` (:data:`PAIR_COLUMNS`).

    A pair with an update below the noise floor gets its cosine (a Frobenius inner product,
    which rounding noise only dilutes) but no angles, and says which update it is.
    """
    pos = {update.index: i for i, update in enumerate(plan.updates)}
    gram = m.gram.gram
    rows = []
    for a, b in plan.pairs:
        ua, ub = pos[a], pos[b]
        for k, part in enumerate(ctx.parts):
            status = m.status
            if status == "ok":
                noisy = [f"update {i}" for i, u in ((a, ua), (b, ub)) if (u, k) in m.update_status]
                if noisy:
                    status = f"below noise floor in {' and '.join(noisy)}"
            row = _pair_row(a, b, ctx, part, gram[k, ua, ub], gram[k, ua, ua], gram[k, ub, ub],
                            m.bases.get((ua, k)), m.bases.get((ub, k)), status)
            if not plan.options.angles and status == "ok":
                row["status"] = "angles not computed (norms only)"
            if plan.options.paper_angles:
                row.update(_paper_columns(m.paper_bases.get((ua, k)), m.paper_bases.get((ub, k))))
            rows.append(row)
    return rows


def _pair_row(a: int, b: int, ctx: TensorContext, part: Part, inner: torch.Tensor, sq_a: torch.Tensor,
              sq_b: torch.Tensor, basis_a: Optional[SingularBasis], basis_b: Optional[SingularBasis],
              status: str) -> dict[str, Any]:
    shape = part_shape(ctx, part)
    norm = math.sqrt(float(sq_a) * float(sq_b))
    sized = status == "ok" or status.startswith("below noise")  # noise dilutes a cosine; it does not fake one
    row: dict[str, Any] = {
        "update_a": a, "update_b": b, "name": ctx.name, "part": part.part, "layer": ctx.info.layer,
        "module": part.module, "shape": "x".join(map(str, shape)),
        "cosine": float(inner) / norm if norm > 0 and sized else math.nan,
        "cosine_random": random_cosine_scale(math.prod(shape)),
        "status": status,
    }
    if status != "ok" or basis_a is None or basis_b is None or basis_a.rank == 0 or basis_b.rank == 0:
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


def _paper_columns(basis_a: Optional[torch.Tensor], basis_b: Optional[torch.Tensor]) -> dict[str, Any]:
    """The paper's ranks (99% energy) and mean one-sided angle of b's vectors to a's span (degrees)."""
    if basis_a is None or basis_b is None:
        return {"paper_rank_a": None, "paper_rank_b": None, "paper_angle_mean_deg": math.nan}
    theta = one_sided_angles(basis_a, basis_b) if basis_b.shape[1] else torch.empty(0)
    return {"paper_rank_a": basis_a.shape[1], "paper_rank_b": basis_b.shape[1],
            "paper_angle_mean_deg": float(torch.rad2deg(theta.double()).mean()) if theta.numel() else math.nan}


def skipped_update_row(update: UpdatePlan, info: ParamInfo, reason: str) -> dict[str, Any]:
    """The row of a tensor that could not be aligned across the checkpoints (``status`` says why)."""
    return {
        "update": update.index, "from_ckpt": update.source, "to_ckpt": update.target, "name": info.name, "part": "",
        "layer": info.layer, "module": info.module, "shape": "", "dtype": "", "fro": math.nan, "rms": math.nan,
        "rel": math.nan, "noise_fro": math.nan, "snr": math.nan, "rank": None, "energy_captured": math.nan,
        "status": f"skipped: {reason}",
    }
