"""One runner per probe of a diagnosis: what it needs, how it runs, what it adds to the evidence.

Every runner takes the :class:`ProbeContext` (the loaded models, the record splits, the old-task
accuracies before and after, the options) and returns a :class:`ProbeOutcome`: its tables, its
headline numbers, why parts of it were skipped, and the facts the verdict and the freeze-depth
recommendation read. :data:`RUNNERS` lists them in the order :func:`~.diagnose.diagnose` runs them;
:func:`missing_input` says why a probe cannot run on the inputs given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError
from ..updates.engine import audit
from ..updates.options import AuditOptions
from .format_probe import format_probe
from .grafting import grafting_curve
from .linear_probe import linear_probe
from .options import DiagnoseOptions
from .recommend import depth_from_geometry, restored_fractions
from .records import ProbeRecord
from .recovery import run_recovery
from .residual_shift import residual_shift

__all__ = ["ProbeContext", "ProbeOutcome", "RUNNERS", "OLD_TASK_PROBES", "missing_input", "model_chain"]

logger = logging.getLogger(__name__)

# Probes that read old-task records (the geometry reads checkpoints alone).
OLD_TASK_PROBES = ("recovery", "format", "linear", "grafting", "shift")


@dataclass
class ProbeContext:
    """What every probe may read.

    Attributes:
        models: ``before``, ``after`` and (when given) ``base``, loaded.
        tokenizer: shared by the models.
        held: old-task records of held-out individuals (every score is on these).
        pool: old-task records of other individuals (the recovery examples).
        new: new-task records (may be empty).
        pretraining: the old-task facts in the pretraining format (None: not given).
        options: the :class:`~.options.DiagnoseOptions`.
        num_layers: transformer blocks of the models.
        acc_before, acc_after: old-task exact match on ``held`` before and after (None without records).
        audit_result: an audit result or its summary, when one was passed in.
        chain: the checkpoints an audit would read: base (if any), before, after (paths or models).
    """

    models: dict[str, PreTrainedModel]
    tokenizer: PreTrainedTokenizerBase
    held: list[ProbeRecord]
    pool: list[ProbeRecord]
    new: list[ProbeRecord]
    pretraining: Optional[Sequence[Any]]
    options: DiagnoseOptions
    num_layers: int
    acc_before: Optional[float] = None
    acc_after: Optional[float] = None
    audit_result: Any = None
    chain: list[Any] = field(default_factory=list)


@dataclass
class ProbeOutcome:
    """What one probe found.

    Attributes:
        frames: its tables, by name; evidence: its headline numbers (flat name → number).
        skipped: parts that did not run, and why.
        facts: what the verdict and the recommendation read: ``recovery`` (the recovery table),
            ``pretraining_before`` / ``pretraining_after``, ``grafting`` (the grafting table),
            ``audit_summary``.
    """

    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def missing_input(probe: str, ctx: ProbeContext) -> Optional[str]:
    """Why ``probe`` cannot run on these inputs, or None when it can."""
    if probe == "recovery" and not ctx.pool:
        return "no old-task records about other individuals to recover with"
    if probe == "format" and not ctx.pretraining:
        return "no pretraining-format records"
    return None


def recovery(ctx: ProbeContext) -> ProbeOutcome:
    """Recover the forgotten model (and the never-trained control) with n examples about other people."""
    out = ProbeOutcome()
    control = ctx.models.get("base")
    result = run_recovery(ctx.models["after"], ctx.tokenizer, ctx.pool, ctx.held, control=control,
                          acc_before=ctx.acc_before, settings=ctx.options.recovery,
                          eval_batch_size=ctx.options.eval_batch_size)
    out.frames["recovery"] = result.table
    out.facts["recovery"] = result.table
    if control is None:
        out.skipped["recovery control"] = "no --base model: recovery ran without its control, so it does not vote"
    rec = result.table[(result.table["n"] > 0)]
    forgot = rec[rec["model"] == "forgot"]
    if len(forgot):
        best = forgot.loc[forgot["recovery_fraction"].idxmax()] if forgot["recovery_fraction"].notna().any() \
            else forgot.iloc[-1]
        out.evidence["recovery_best_n"] = int(best["n"])
        out.evidence["recovery_fraction"] = float(best["recovery_fraction"])
        out.evidence["recovery_acc"] = float(best["acc"])
        same_n = rec[(rec["model"] == "control") & (rec["n"] == best["n"])]
        if len(same_n):
            out.evidence["recovery_control_fraction"] = float(same_n["recovery_fraction"].iloc[0])
            out.evidence["recovery_control_acc"] = float(same_n["acc"].iloc[0])
    return out


def pretraining_format(ctx: ProbeContext) -> ProbeOutcome:
    """Ask the held-out facts in the task format and in the pretraining format."""
    out = ProbeOutcome()
    try:
        fp = format_probe(ctx.models, ctx.tokenizer, ctx.held, ctx.pretraining or [], rank=ctx.options.format_rank,
                          max_candidates=ctx.options.max_candidates, seed=ctx.options.seed,
                          batch_size=ctx.options.eval_batch_size)
    except InvalidDataError as exc:
        out.skipped["format"] = str(exc)
        return out
    out.frames["format"] = fp.per_attribute
    out.frames["format_overall"] = fp.overall
    out.facts["pretraining_before"] = fp.accuracy("before", "pretraining")
    out.facts["pretraining_after"] = fp.accuracy("after", "pretraining")
    for name in ctx.models:
        for fmt in ("task", "pretraining"):
            out.evidence[f"{fmt}_format_{name}"] = fp.accuracy(name, fmt)
            if ctx.options.format_rank:
                out.evidence[f"{fmt}_format_top1_{name}"] = fp.accuracy(name, fmt, "top1")
    return out


def _linear_summary(frame: pd.DataFrame, model: str) -> dict[str, float]:
    """Mean over attributes of the best layer's accuracy (and the shuffled control / chance there)."""
    rows = frame[frame["model"] == model]
    if rows.empty:
        return {}
    best = rows.loc[rows.groupby("attribute")["acc"].idxmax()]
    return {"acc": float(best["acc"].mean()), "shuffled": float(best["acc_shuffled"].mean()),
            "chance": float(best[["chance_majority", "chance_uniform"]].max(axis=1).mean())}


def linear(ctx: ProbeContext) -> ProbeOutcome:
    """Decode each attribute from every layer's hidden states, per model."""
    out = ProbeOutcome()
    try:
        frame = linear_probe(ctx.models, ctx.tokenizer, ctx.held, test_fraction=ctx.options.linear_test_fraction,
                             seed=ctx.options.seed, batch_size=ctx.options.eval_batch_size)
    except InvalidDataError as exc:
        out.skipped["linear"] = str(exc)
        return out
    out.frames["linear_probe"] = frame
    for name in ctx.models:
        for key, value in _linear_summary(frame, name).items():
            out.evidence[f"linear_probe_{key}_{name}"] = value
    return out


def grafting(ctx: ProbeContext) -> ProbeOutcome:
    """Graft the bottom / top blocks (and the embeddings) of ``before`` into ``after``."""
    out = ProbeOutcome()
    table = grafting_curve(ctx.models["before"], ctx.models["after"], ctx.tokenizer, ctx.held, ctx.new or None,
                           ks=ctx.options.graft_ks, top=ctx.options.graft_top,
                           batch_size=ctx.options.eval_batch_size)
    if ctx.acc_before is not None and ctx.acc_after is not None:
        table = restored_fractions(table, ctx.acc_before, ctx.acc_after)
    out.frames["grafting"] = table
    out.facts["grafting"] = table
    ok = table[table["status"] == "ok"]
    bottom = ok[ok["arm"] == "bottom"].set_index("k")["old_acc"]
    top = ok[ok["arm"] == "top"].set_index("k")["old_acc"]
    both = [k for k in range(1, ctx.num_layers) if k in bottom.index and k in top.index]
    if both:
        out.evidence["graft_bottom_minus_top"] = float(sum(bottom[k] - top[k] for k in both) / len(both))
    for k, value in bottom.items():
        out.evidence[f"graft_bottom_k{int(k)}_old_acc"] = float(value)
    return out


def shift(ctx: ProbeContext) -> ProbeOutcome:
    """How far the residual stream moved, per layer, between ``before`` and ``after``."""
    out = ProbeOutcome()
    frame = residual_shift(ctx.models["before"], ctx.models["after"], ctx.tokenizer, ctx.held,
                           batch_size=ctx.options.eval_batch_size)
    out.frames["residual_shift"] = frame
    out.evidence["shift_min_cka"] = float(frame["cka"].min())
    out.evidence["shift_min_cka_layer"] = int(frame.loc[frame["cka"].idxmin(), "layer"])
    return out


def geometry(ctx: ProbeContext) -> ProbeOutcome:
    """The update geometry per block: from the audit given, or from one run now (base → before → after)."""
    out = ProbeOutcome()
    summary = None
    if ctx.audit_result is not None:
        summary = getattr(ctx.audit_result, "summary", ctx.audit_result)
    elif ctx.options.compute_audit:
        logger.info("auditing the update geometry of %d checkpoints", len(ctx.chain))
        summary = audit(ctx.chain, AuditOptions(rank=ctx.options.audit_rank, seed=ctx.options.seed,
                                                device=ctx.options.device),
                        progress=False).summary
        if "base" not in ctx.models:
            out.skipped["geometry angles"] = "no --base model: one update (before → after), sizes only"
    else:
        out.skipped["geometry"] = "no audit result and compute_audit=False"
    if summary is not None:
        _, _, table = depth_from_geometry(summary, ctx.num_layers)
        out.frames["geometry"] = table
        out.facts["audit_summary"] = summary
    return out


def model_chain(base: Any, before: Any, after: Any, loaded: dict[str, PreTrainedModel]) -> list[Any]:
    """The checkpoints an audit of the diagnosis reads: paths stream one tensor at a time from disk,
    model objects are read in memory."""
    return [arg if not isinstance(arg, torch.nn.Module) else loaded[name]
            for name, arg in (("base", base), ("before", before), ("after", after)) if name in loaded]


RUNNERS: dict[str, Callable[[ProbeContext], ProbeOutcome]] = {
    "recovery": recovery,
    "format": pretraining_format,
    "linear": linear,
    "grafting": grafting,
    "shift": shift,
    "geometry": geometry,
}
