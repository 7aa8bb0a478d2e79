"""The audit: stream every tensor of a checkpoint chain through the update geometry.

For each stored tensor (one at a time) and each update of the chain:

1. *Gram pass* (:mod:`.gram`) — rows of the tensor are read in chunks from every checkpoint
   involved, and the Frobenius inner products ⟨ΔW_a, ΔW_b⟩ of the updates (per fused part)
   and ‖W_source‖² are accumulated in float64. Sizes (``fro``, ``rms``, ``rel``) and cosines
   come from this Gram matrix. The dense updates are kept for step 2 when two of them (or all,
   within one chunk budget) fit; else step 2 forms them again, one at a time.
2. *Basis pass* (:mod:`.bases`) — for 2-D tensors, each update is oriented output-axis first
   and split into fused parts; its top singular basis (exact or accurate randomized SVD, or
   exact from LoRA factors) is cached for every pair that uses it: N updates, N SVDs.
3. *Rows* (:mod:`.rows`) — sizes per update, and principal angles, overlaps and the paper's
   one-sided angle per pair, between cached bases.

Results are tidy DataFrames (one row per update × tensor part, one row per pair of updates ×
2-D tensor part) and a summary dict (:mod:`.summary`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..devices import check_device
from ..distributed import all_gather, current_world, fail_together
from ..io.adapter import LoraAdapter
from ..io.checkpoint import Checkpoint
from ..io.layer_map import ParamInfo
from ..io.loader import CheckpointSource
from .bases import update_bases
from .floors import below_floor, update_noise
from .gram import gram_pass
from .options import AuditOptions
from .plan import AuditPlan, plan_pairs, plan_updates
from .shares import share_by_size
from .measurement import TensorMeasurement
from .rows import PAIR_COLUMNS, PAPER_COLUMNS, UPDATE_COLUMNS, pair_rows, skipped_update_row, update_rows
from .sources import aligned_names, check_architectures, log_dtype_mix, open_sources
from .summary import audit_summary
from .tensor import tensor_context

__all__ = ["AuditResult", "audit", "check_device"]

logger = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """Tidy results of :func:`audit`.

    Attributes:
        updates: one row per update × tensor (× fused part); columns ``UPDATE_COLUMNS``.
        pairs: one row per pair of updates × 2-D tensor (× part); columns ``PAIR_COLUMNS``.
        summary: inputs, options, counts and per-layer aggregates (see :mod:`.summary`).
    """

    updates: pd.DataFrame
    pairs: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)


def audit(checkpoints: Sequence[Union[CheckpointSource, LoraAdapter]], options: Optional[AuditOptions] = None,
          *, progress: bool = True) -> AuditResult:
    """Measure every update of a checkpoint chain, tensor by tensor.

    Args:
        checkpoints: two or more checkpoints (paths, modules, state dicts, :class:`Checkpoint`
            or :class:`LoraAdapter`), or one directory of Trainer ``checkpoint-N`` folders.
        options: an :class:`AuditOptions`; defaults give a chain audit at rank 16.
        progress: show a progress bar over tensors (on rank 0 only, under torch.distributed).

    Under an initialised ``torch.distributed`` group (``torchrun``), every rank calls this with the
    same arguments; each audits a share of the tensors balanced by bytes, and every rank returns
    the whole result, equal to a one-process audit's. An error on any rank is raised on all
    (:func:`spurious_diag.distributed.fail_together`). ``summary["distributed"]`` records the shares.

    Returns:
        An :class:`AuditResult` with the ``updates`` and ``pairs`` frames and a summary.

    Raises:
        MismatchError: checkpoints of different architectures, or tensor names / shapes that
            differ (unless ``options.skip_mismatched``).
        UsageError: fewer than two checkpoints, an unavailable device.
    """
    options = options or AuditOptions()
    world = current_world()
    with fail_together():  # a rank that cannot open its inputs stops them all (a node without the file)
        sources = open_sources(list(checkpoints))
        if options.pairs == "all" and len(checkpoints) == 1:
            options = dataclasses.replace(options, pairs="trajectory")
        device = check_device(options.device)
        updates = plan_updates(sources, options.base)
        plan = AuditPlan(sources, updates, plan_pairs(len(updates), options.pairs), options, device,
                         getattr(torch, options.dtype))
        base = sources[0]
        assert isinstance(base, Checkpoint)
        check_architectures(sources)
        names, skipped = aligned_names(sources, options.skip_mismatched)

    update_frame: list[dict[str, Any]] = []
    pair_frame: list[dict[str, Any]] = []
    for name, reason in skipped.items():
        info = base.param_info(name) if name in base else ParamInfo(name, None, name, "")
        for update in updates:
            update_frame.append(skipped_update_row(update, info, reason))
    pattern = options.modules
    selected = [n for n in names if pattern is None or _matches(pattern, n, base.param_info(n).module)]
    log_dtype_mix(sources, selected, options.dtype)
    # Under torchrun each rank audits its share (balanced by bytes); every tensor's result is the
    # same on any rank (the randomized SVD's seed is per tensor, not per rank), so the gathered rows
    # equal a one-process audit's.
    shares = share_by_size([base.info(n).nbytes for n in selected], world.size)  # the work grows with bytes
    mine = shares.indices[world.rank]
    logger.info("auditing %d tensors x %d updates (%d pairs)%s", len(selected), len(updates), len(plan.pairs),
                f" on {world.size} ranks" if world.size > 1 else "")
    rows: dict[int, tuple[list[dict], list[dict]]] = {}
    desc = f"audit (rank 0 of {world.size})" if world.size > 1 else "audit"
    with fail_together():
        for index in tqdm(mine, desc=desc, unit="tensor", disable=not (progress and world.is_main)):
            rows[index] = _audit_tensor(selected[index], plan)
    for share in all_gather(rows):  # [rows] itself in one process
        rows.update(share)
    for index in range(len(selected)):  # in the one-process order, whoever audited each tensor
        update_frame.extend(rows[index][0])
        pair_frame.extend(rows[index][1])
    updates_df = pd.DataFrame(update_frame, columns=UPDATE_COLUMNS + (["intruders"] if options.intruders else []))
    updates_df["layer"] = updates_df["layer"].astype("Int64")
    updates_df["rank"] = updates_df["rank"].astype("Int64")
    pairs_df = pd.DataFrame(pair_frame, columns=PAIR_COLUMNS + (PAPER_COLUMNS if options.paper_angles else []))
    pairs_df["layer"] = pairs_df["layer"].astype("Int64")
    for col in ("rank_a", "rank_b") + (("paper_rank_a", "paper_rank_b") if options.paper_angles else ()):
        pairs_df[col] = pairs_df[col].astype("Int64")
    summary = audit_summary(updates_df, pairs_df, sources, updates, options)
    summary["distributed"] = {"world_size": world.size, **shares.to_dict()}
    return AuditResult(updates_df, pairs_df, summary)


def _matches(pattern: str, name: str, module: str) -> bool:
    return bool(re.search(pattern, name) or re.search(pattern, module))


def _audit_tensor(name: str, plan: AuditPlan) -> tuple[list[dict], list[dict]]:
    """Gram pass, noise floor, basis pass and rows of one tensor."""
    ctx = tensor_context(name, plan.sources)
    options = plan.options
    measured = gram_pass(ctx, plan.sources, plan.updates, dtype=plan.dtype, chunk_bytes=options.chunk_bytes,
                         noise=options.noise_floor)
    bad = [k for k, ok in measured.finite.items() if not ok]
    status = "ok"
    if ctx.shape and math.prod(ctx.shape) == 0:
        status = "empty tensor (0 elements): nothing to measure"
    if bad:
        status = "non-finite values in " + ", ".join(f"CKPT_{k} ({plan.sources[k].path})" for k in bad)
        logger.warning("%s: %s; geometry skipped", name, status)
    m = TensorMeasurement(measured, status)
    if options.noise_floor and not bad:
        m.noise = update_noise(ctx, plan, measured)
        for key, noise in m.noise.items():
            reason = below_floor(m.fro(key), noise, options.min_snr)
            if reason:
                m.update_status[key] = reason
    if ctx.is_matrix and not bad and options.angles:
        update_bases(ctx, plan, m, measured.deltas)
        for key, basis in m.bases.items():  # signal above the snr threshold, yet no direction above the edge
            if basis.rank == 0 and m.fro(key) > 0 and key in m.noise:
                m.update_status[key] = (f"below noise floor: no direction above the noise edge "
                                        f"{m.noise[key].edge:.3g} (‖ΔW‖ {m.fro(key):.3g})")
    measured.deltas = None
    return update_rows(ctx, plan, m), (pair_rows(ctx, plan, m) if ctx.is_matrix else [])
