"""The audit: stream every tensor of a checkpoint chain through the update geometry.

For each stored tensor (one at a time) and each update of the chain:

1. *Gram pass* (``gram_pass``) — rows of the tensor are read in chunks from
   every checkpoint involved, and the Frobenius inner products ⟨ΔW_a, ΔW_b⟩ of
   the updates (per fused part) and ‖W_source‖² are accumulated in float64.
   Sizes (``fro``, ``rms``, ``rel``) and cosines come from this Gram matrix.
   The dense updates are kept for step 2 when two of them (or all, within one
   chunk budget) fit; else step 2 forms them again, one at a time.
2. *Basis pass* — for 2-D tensors, each update is oriented output-axis first
   and split into fused parts; its top
   singular basis (exact or accurate randomized SVD, or exact from LoRA
   factors) is cached for every pair that uses it: N updates, N SVDs.
3. *Pairs* — principal angles, overlaps and the paper's one-sided angle
   between cached bases.

Results are tidy DataFrames (one row per update × tensor part, one row per
pair of updates × 2-D tensor part) and a summary dict (``audit_summary``).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import pandas as pd
import torch
from tqdm.auto import tqdm

from .errors import MismatchError, UsageError
from .extract import Source, UpdatePlan, dense_delta, factored_delta, plan_pairs, plan_updates
from .geometry import (
    SingularBasis,
    compare_bases,
    intruder_dimensions,
    random_cosine_scale,
    random_overlap,
    top_singular_basis,
)
from .gram_pass import gram_pass
from .io.adapter import LoraAdapter, is_lora_adapter, load_lora_adapter
from .io.chain import is_chain_dir, list_chain
from .io.checkpoint import Checkpoint
from .io.layer_map import ParamInfo
from .io.loader import CheckpointSource, load_checkpoint
from .io.orientation import Part, output_axis, split_parts

__all__ = ["AuditOptions", "AuditResult", "audit", "open_sources", "UPDATE_COLUMNS", "PAIR_COLUMNS"]

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class AuditOptions:
    """How to measure. Defaults follow DESIGN.md §1–2.

    Attributes:
        base: measure every update from CKPT_0 instead of a chain.
        rank: singular vectors per update basis (fixed r), or ``"energy"`` for the energy rank.
        energy: energy fraction for ``rank="energy"``; max_rank caps it.
        pairs: ``all``, ``consecutive`` or ``trajectory`` (see ``extract.plan_pairs``).
        modules: regex searched in the stored name and the normalized module; ``None`` keeps all.
        device: where SVDs run (``cpu`` or ``cuda``); I/O and the Gram pass stay on the CPU.
        dtype: working float dtype (float32; float64 for reference runs and tests).
        skip_mismatched: report tensors whose names or shapes differ as skipped rows instead of raising.
        angles: compute singular bases and principal angles; ``False`` gives a norms-only
            audit (sizes and cosines from the streamed Gram pass, no SVD).
        intruders: also count intruder dimensions (exact SVD of whole weights: slow).
        chunk_bytes: memory budget of one Gram-pass chunk (all checkpoints' rows together).
        seed: seed of the randomized SVD's test matrices.
    """

    base: bool = False
    rank: Union[int, str] = 16
    energy: float = 0.9
    max_rank: int = 64
    pairs: str = "all"
    modules: Optional[str] = None
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    skip_mismatched: bool = False
    angles: bool = True
    intruders: bool = False
    chunk_bytes: int = 64 * 2**20
    seed: int = 0


@dataclass
class AuditResult:
    """Tidy results of :func:`audit`.

    Attributes:
        updates: one row per update × tensor (× fused part); columns ``UPDATE_COLUMNS``.
        pairs: one row per pair of updates × 2-D tensor (× part); columns ``PAIR_COLUMNS``.
        summary: inputs, options, counts and per-layer aggregates (see ``audit_summary``).
    """

    updates: pd.DataFrame
    pairs: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def open_sources(paths: Sequence[Union[CheckpointSource, LoraAdapter]]) -> list[Source]:
    """Open each input lazily: full checkpoints and PEFT LoRA adapter dirs.

    A single directory of Trainer ``checkpoint-N`` folders expands to its chain.
    """
    if len(paths) == 1 and isinstance(paths[0], (str, os.PathLike)) and is_chain_dir(os.fspath(paths[0])):
        paths = [p for _, p in list_chain(os.fspath(paths[0]))]
    sources: list[Source] = []
    for p in paths:
        if isinstance(p, LoraAdapter):
            sources.append(p)
        elif isinstance(p, (str, os.PathLike)) and is_lora_adapter(os.fspath(p)):
            sources.append(load_lora_adapter(os.fspath(p)))
        else:
            sources.append(load_checkpoint(p))
    return sources


def audit(checkpoints: Sequence[Union[CheckpointSource, LoraAdapter]], options: Optional[AuditOptions] = None,
          *, progress: bool = True) -> AuditResult:
    """Measure every update of a checkpoint chain, tensor by tensor.

    Args:
        checkpoints: two or more checkpoints (paths, modules, state dicts, :class:`Checkpoint`
            or :class:`LoraAdapter`), or one directory of Trainer ``checkpoint-N`` folders.
        options: an :class:`AuditOptions`; defaults give a chain audit at rank 16.
        progress: show a progress bar over tensors.

    Returns:
        An :class:`AuditResult` with the ``updates`` and ``pairs`` frames and a summary.

    Raises:
        MismatchError: checkpoints of different architectures, or tensor names / shapes that
            differ (unless ``options.skip_mismatched``).
        UsageError: fewer than two checkpoints, a bad ``modules`` regex, an unavailable device.
    """
    from .audit_summary import audit_summary

    options = options or AuditOptions()
    sources = open_sources(list(checkpoints))
    if options.pairs == "all" and len(checkpoints) == 1:
        options = _replace(options, pairs="trajectory")
    device = _check_device(options.device)
    plans = plan_updates(sources, options.base)
    pairs = plan_pairs(len(plans), options.pairs)
    base = sources[0]
    assert isinstance(base, Checkpoint)
    _check_architectures(sources)
    names, skipped = _aligned_names(sources, options.skip_mismatched)
    pattern = _compile(options.modules)

    update_rows: list[dict[str, Any]] = []
    pair_rows: list[dict[str, Any]] = []
    for name, reason in skipped.items():
        info = base.param_info(name) if name in base else ParamInfo(name, None, name, "")
        for plan in plans:
            update_rows.append(_skipped_update_row(plan, info, reason))
    selected = [n for n in names if pattern is None or pattern.search(n) or pattern.search(base.param_info(n).module)]
    _log_dtype_mix(sources, selected, options.dtype)
    logger.info("auditing %d tensors x %d updates (%d pairs)", len(selected), len(plans), len(pairs))
    for name in tqdm(selected, desc="audit", unit="tensor", disable=not progress):
        rows_u, rows_p = _audit_tensor(name, sources, plans, pairs, options, device)
        update_rows.extend(rows_u)
        pair_rows.extend(rows_p)
    updates = pd.DataFrame(update_rows, columns=UPDATE_COLUMNS + (["intruders"] if options.intruders else []))
    updates["layer"] = updates["layer"].astype("Int64")
    updates["rank"] = updates["rank"].astype("Int64")
    pairs_df = pd.DataFrame(pair_rows, columns=PAIR_COLUMNS)
    pairs_df["layer"] = pairs_df["layer"].astype("Int64")
    for col in ("rank_a", "rank_b"):
        pairs_df[col] = pairs_df[col].astype("Int64")
    summary = audit_summary(updates, pairs_df, sources, plans, options)
    return AuditResult(updates, pairs_df, summary)


# ----------------------------------------------------------------------------- checks

def _replace(options: AuditOptions, **changes: Any) -> AuditOptions:
    from dataclasses import replace

    return replace(options, **changes)


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available here")
    return dev


def _compile(regex: Optional[str]) -> Optional[re.Pattern[str]]:
    if regex is None:
        return None
    try:
        return re.compile(regex)
    except re.error as exc:
        raise UsageError(f"invalid --modules regex {regex!r}: {exc}") from None


def _check_architectures(sources: Sequence[Source]) -> None:
    full = [s for s in sources if isinstance(s, Checkpoint)]
    ref = full[0]
    for other in full[1:]:
        a, b = (ref.config or {}).get("model_type"), (other.config or {}).get("model_type")
        if a and b and a != b:
            raise MismatchError(f"architecture {b!r} differs from {a!r} of {ref.path}", other.path)
        if ref.num_layers is not None and other.num_layers is not None and ref.num_layers != other.num_layers:
            raise MismatchError(f"{other.num_layers} blocks, but {ref.path} has {ref.num_layers}", other.path)


def _aligned_names(sources: Sequence[Source], skip: bool) -> tuple[list[str], dict[str, str]]:
    """Names present with equal shapes in every full checkpoint; the others with the reason."""
    full = [(i, s) for i, s in enumerate(sources) if isinstance(s, Checkpoint)]
    ref_i, ref = full[0]
    problems: dict[str, tuple[str, str]] = {}  # name -> (reason, path at fault)
    for i, other in full[1:]:
        for name in ref:
            if name not in other:
                problems.setdefault(name, (f"missing in CKPT_{i}", other.path))
            elif other.info(name).shape != ref.info(name).shape:
                problems.setdefault(name, (
                    f"shape {ref.info(name).shape} in CKPT_{ref_i} but {other.info(name).shape} in CKPT_{i}", other.path))
        for name in other:
            if name not in ref:
                problems.setdefault(name, (f"in CKPT_{i} but missing in CKPT_{ref_i}", ref.path))
    for i, s in enumerate(sources):
        if isinstance(s, LoraAdapter):
            for name, (a_name, b_name) in s.factors.items():
                if name not in ref:
                    problems.setdefault(name, (f"adapter CKPT_{i} targets a weight the base does not have", s.path))
                    continue
                out_in = (s.checkpoint.info(b_name).shape[0], s.checkpoint.info(a_name).shape[1])
                stored = out_in[::-1] if ref.param_info(name).transposed else out_in
                if tuple(ref.info(name).shape) != stored:
                    problems.setdefault(name, (
                        f"adapter CKPT_{i} factors give {stored}, base weight is {tuple(ref.info(name).shape)}", s.path))
    if problems and not skip:
        name, (reason, path) = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MismatchError(f"{reason}{more}; pass --skip-mismatched to audit the rest", path, name)
    return [n for n in ref if n not in problems], {n: f"{reason} ({path})" for n, (reason, path) in problems.items()}


def _log_dtype_mix(sources: Sequence[Source], names: Sequence[str], dtype: torch.dtype) -> None:
    full = [s for s in sources if isinstance(s, Checkpoint)]
    mixed = [n for n in names if len({s.info(n).dtype for s in full}) > 1]
    if mixed:
        kinds = sorted({str(s.info(n).dtype).replace("torch.", "") for n in mixed for s in full})
        logger.warning("dtypes differ across checkpoints (%s) for %d tensors, e.g. %s: compared in %s",
                       "/".join(kinds), len(mixed), mixed[0], str(dtype).replace("torch.", ""))


# ----------------------------------------------------------------------------- one tensor

@dataclass
class _TensorContext:
    name: str
    info: ParamInfo
    shape: tuple[int, ...]
    dtype_label: str
    parts: list[Part]
    out_axis: int


def _context(name: str, sources: Sequence[Source]) -> _TensorContext:
    base = sources[0]
    assert isinstance(base, Checkpoint)
    info = base.param_info(name)
    shape = tuple(base.info(name).shape)
    dtypes = sorted({str(s.info(name).dtype).replace("torch.", "") for s in sources if isinstance(s, Checkpoint)})
    out_axis = output_axis(info, len(shape))
    out_features = shape[out_axis] if shape else 1
    parts = split_parts(info, out_features, base.config) if len(shape) >= 1 else [Part("", info.module, slice(0, 1))]
    return _TensorContext(name, info, shape, "/".join(dtypes), parts, out_axis)


def _part_shape(ctx: _TensorContext, part: Part) -> tuple[int, ...]:
    """Shape of a part in (out, in) orientation."""
    if len(ctx.shape) < 2:
        n = _index_len(part.index, ctx.shape[0] if ctx.shape else 1)
        return (n,)
    out_features = ctx.shape[ctx.out_axis]
    in_features = ctx.shape[1 - ctx.out_axis]
    rest = 1
    for d in ctx.shape[2:]:
        rest *= d
    return (_index_len(part.index, out_features), in_features * rest)


def _index_len(index: Union[slice, torch.Tensor], n: int) -> int:
    return len(range(*index.indices(n))) if isinstance(index, slice) else int(index.numel())


def _part_ids(ctx: _TensorContext) -> torch.Tensor:
    n = ctx.shape[ctx.out_axis] if ctx.shape else 1
    ids = torch.zeros(n, dtype=torch.long)
    for k, part in enumerate(ctx.parts):
        ids[part.index] = k
    return ids


def _bases(ctx: _TensorContext, sources: Sequence[Source], plans: Sequence[UpdatePlan], options: AuditOptions,
           device: torch.device, deltas: Optional[list[torch.Tensor]], gram: torch.Tensor
           ) -> tuple[dict[tuple[int, int], SingularBasis], dict[tuple[int, int], int]]:
    """Top singular basis per (update position, part), and intruder counts when asked.

    ``deltas`` are the dense updates kept by the Gram pass when the tensor was small
    enough; otherwise each update is formed again here, one at a time. ``gram`` (P×N×N)
    holds their squared norms, so the bases need not measure them again.
    """
    bases: dict[tuple[int, int], SingularBasis] = {}
    intruders: dict[tuple[int, int], int] = {}
    rank = options.rank if isinstance(options.rank, int) else options.max_rank
    energy = options.energy if options.rank == "energy" else None
    for u, plan in enumerate(plans):
        if plan.factored:
            fu = factored_delta(plan, sources, ctx.name, options.dtype)
            for k, part in enumerate(ctx.parts):
                if fu is None:
                    continue
                piece = fu.take_rows(part.index)
                bases[(u, k)] = top_singular_basis(piece, rank, energy=energy, max_rank=options.max_rank)
            continue
        delta = deltas[u] if deltas is not None else dense_delta(plan, sources, ctx.name, options.dtype)
        oriented = _orient(delta, ctx).to(device)
        if options.intruders:
            src, tgt = sources[plan.source], sources[plan.target]
            assert isinstance(src, Checkpoint) and isinstance(tgt, Checkpoint)
            before = _orient(src[ctx.name].to(options.dtype), ctx).to(device)
            after = _orient(tgt[ctx.name].to(options.dtype), ctx).to(device)
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


def _orient(t: torch.Tensor, ctx: _TensorContext) -> torch.Tensor:
    """(out, in) orientation, extra trailing axes flattened into ``in``."""
    if ctx.out_axis == 1:
        t = t.mT
    return t.reshape(t.shape[0], -1)


def _to_cpu(b: SingularBasis) -> SingularBasis:
    if b.U.device.type == "cpu":
        return b
    return SingularBasis(b.U.cpu(), b.S.cpu(), b.Vh.cpu(), b.total_energy)


def _audit_tensor(name: str, sources: Sequence[Source], plans: Sequence[UpdatePlan], pairs: Sequence[tuple[int, int]],
                  options: AuditOptions, device: torch.device) -> tuple[list[dict], list[dict]]:
    ctx = _context(name, sources)
    pos = {p.index: i for i, p in enumerate(plans)}
    measured = gram_pass(name, ctx.shape, ctx.out_axis, _part_ids(ctx), sources, plans,
                         ctx.info.transposed, options.dtype, options.chunk_bytes)
    gram, base_sq, deltas = measured.gram, measured.source_sq, measured.deltas
    bad = [k for k, ok in measured.finite.items() if not ok]
    matrix = len(ctx.shape) >= 2 and min(ctx.shape[0], math.prod(ctx.shape[1:])) >= 2
    status = "ok"
    if ctx.shape and math.prod(ctx.shape) == 0:
        status = "empty tensor (0 elements): nothing to measure"
    if bad:
        status = "non-finite values in " + ", ".join(f"CKPT_{k} ({sources[k].path})" for k in bad)
        logger.warning("%s: %s; geometry skipped", name, status)
    bases: dict[tuple[int, int], SingularBasis] = {}
    intruders: dict[tuple[int, int], int] = {}
    if matrix and not bad and options.angles:
        bases, intruders = _bases(ctx, sources, plans, options, device, deltas, gram)
    del deltas

    update_rows = []
    for u, plan in enumerate(plans):
        for k, part in enumerate(ctx.parts):
            shape = _part_shape(ctx, part)
            numel = math.prod(shape)
            fro = math.sqrt(max(float(gram[k, u, u]), 0.0)) if not bad else math.nan
            base_norm = math.sqrt(float(base_sq[k, u]))
            basis = bases.get((u, k))
            row = {
                "update": plan.index, "from_ckpt": plan.source, "to_ckpt": plan.target,
                "name": name, "part": part.part, "layer": ctx.info.layer, "module": part.module,
                "shape": "x".join(map(str, shape)), "dtype": ctx.dtype_label,
                "fro": fro, "rms": fro / math.sqrt(numel) if numel else math.nan,
                "rel": fro / base_norm if base_norm > 0 else math.nan,
                "rank": basis.rank if basis is not None else None,
                "energy_captured": basis.energy_captured if basis is not None else math.nan,
                "status": status,
            }
            if options.intruders:
                row["intruders"] = intruders.get((u, k))
            update_rows.append(row)

    pair_rows = []
    if matrix:
        for a, b in pairs:
            ua, ub = pos[a], pos[b]
            for k, part in enumerate(ctx.parts):
                row = _pair_row(a, b, ctx, k, part, gram[k, ua, ub], gram[k, ua, ua], gram[k, ub, ub],
                                bases.get((ua, k)), bases.get((ub, k)), status)
                if not options.angles and status == "ok":
                    row["status"] = "angles not computed (norms only)"
                pair_rows.append(row)
    return update_rows, pair_rows


def _pair_row(a: int, b: int, ctx: _TensorContext, k: int, part: Part, inner: torch.Tensor, sq_a: torch.Tensor,
              sq_b: torch.Tensor, basis_a: Optional[SingularBasis], basis_b: Optional[SingularBasis],
              status: str) -> dict[str, Any]:
    shape = _part_shape(ctx, part)
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


def _skipped_update_row(plan: UpdatePlan, info: ParamInfo, reason: str) -> dict[str, Any]:
    return {
        "update": plan.index, "from_ckpt": plan.source, "to_ckpt": plan.target, "name": info.name, "part": "",
        "layer": info.layer, "module": info.module, "shape": "", "dtype": "", "fro": math.nan, "rms": math.nan,
        "rel": math.nan, "rank": None, "energy_captured": math.nan, "status": f"skipped: {reason}",
    }
