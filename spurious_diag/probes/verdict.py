"""``diagnose``: run the probes that the inputs allow and give a verdict on the forgetting.

Given the model before Task 1 (``before``) and after (``after``), and old-task records:

1. split the old-task records into *held-out* individuals (every score is on these) and
   *other* individuals (the recovery examples), by ``person_id`` when present, else by a seeded
   record split (or take ``recovery_records`` as the other individuals);
2. score the old task (and the new task) for before / after (/ base): the ``accuracy`` table;
3. run the probes: ``recovery`` (control = ``base``), ``format`` (with pretraining-format
   records), ``linear`` (probes per layer), ``grafting`` (bottom / top / embeddings), ``shift``
   (residual stream before → after), ``geometry`` (an :func:`~spurious_diag.audit.audit`
   result, passed in or computed from base → before → after);
4. apply the numeric rules of :mod:`.rules` (thresholds in :class:`~.rules.VerdictRules`):
   **spurious** when the old task dropped by ≥ 0.20 and every applicable knowledge probe says
   the facts survive (recovery fraction ≥ 0.40 at some n, beating the never-trained control by
   ≥ 0.20; pretraining-format accuracy ≥ 0.80 of before); **real** when every applicable one
   says they are gone (recovery no better than the control + 0.10 at every n; pretraining
   format ≤ 0.50 of before); **inconclusive** otherwise, and whenever no drop, no old-task data
   or no applicable knowledge probe;
5. recommend a freeze depth from grafting (stronger) or update geometry (weaker), see
   :mod:`.recommend`.

A probe whose inputs are missing is skipped, and :attr:`Diagnosis.skipped` says why.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .. import __version__
from ..errors import InvalidDataError, MismatchError, UsageError
from ..training.evaluate import evaluate_records
from .format_probe import format_probe
from .grafting import grafting_curve, model_num_layers
from .linear_probe import linear_probe
from .models import ModelArg, load_causal_lm, load_tokenizer_for, model_label
from .recommend import FreezeRecommendation, depth_from_geometry, recommend_freeze_depth, restored_fractions
from .records import ProbeRecord, as_probe_records, has_person_ids, split_by_person
from .recovery import RecoverySettings, run_recovery
from .residual_shift import residual_shift
from .rules import RuleOutcome, VerdictInputs, VerdictRules, decide

__all__ = ["PROBES", "SCHEMA_VERSION", "Diagnosis", "diagnose"]

logger = logging.getLogger(__name__)

PROBES = ("recovery", "format", "linear", "grafting", "shift", "geometry")
SCHEMA_VERSION = 1


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/Inf → None, numpy scalars → Python."""
    if hasattr(x, "item") and not isinstance(x, (list, dict, str)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass
class Diagnosis:
    """The verdict and everything behind it.

    Attributes:
        verdict: ``spurious``, ``real`` or ``inconclusive``.
        reason: one sentence.
        rules: every rule's :class:`~.rules.RuleOutcome` (fired, not fired, not applicable).
        evidence: the headline numbers (flat name → float / int / None).
        frames: per-probe tidy tables: ``accuracy``, ``recovery``, ``format``, ``linear_probe``,
            ``grafting``, ``residual_shift``, ``geometry`` (those that ran).
        recommendation: the freeze depth and its reasoning.
        skipped: probe → why it did not run.
        settings: the rules, recovery settings, split and inputs.
    """

    verdict: str
    reason: str
    rules: list[RuleOutcome]
    evidence: dict[str, Any]
    frames: dict[str, pd.DataFrame] = field(repr=False)
    recommendation: FreezeRecommendation
    skipped: dict[str, str]
    settings: dict[str, Any]

    @property
    def rules_fired(self) -> list[str]:
        """Names of the rules that fired."""
        return [r.name for r in self.rules if r.fired]

    def to_dict(self, *, include_frames: bool = False) -> dict[str, Any]:
        """JSON-able summary (``summary.json``); tables as lists of rows with ``include_frames``."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "package": {"name": "spurious_diag", "version": __version__},
            "kind": "diagnosis",
            "verdict": self.verdict,
            "reason": self.reason,
            "rules_fired": self.rules_fired,
            "rules": [r.to_dict() for r in self.rules],
            "evidence": {k: _clean(v) for k, v in self.evidence.items()},
            "recommendation": self.recommendation.to_dict(),
            "skipped": dict(self.skipped),
            "settings": self.settings,
            "tables": sorted(self.frames),
        }
        if include_frames:
            out["frames"] = {name: [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]
                             for name, frame in self.frames.items()}
        return out

    def to_markdown(self) -> str:
        """A readable ``report.md``."""
        from .markdown import diagnosis_markdown

        return diagnosis_markdown(self)


def _accuracy_rows(models: Mapping[str, PreTrainedModel], tokenizer: PreTrainedTokenizerBase, task: str,
                   records: Sequence[ProbeRecord], batch_size: int) -> list[dict[str, Any]]:
    rows = []
    json_records = [r.as_json() for r in records]
    for name, model in models.items():
        result = evaluate_records(model, tokenizer, json_records, batch_size=batch_size)
        rows.append({"model": name, "task": task, "n": len(records), "exact_match": result.exact_match,
                     "first_token_acc": result.first_token_acc})
    return rows


def _acc(table: pd.DataFrame, model: str, task: str) -> Optional[float]:
    row = table[(table["model"] == model) & (table["task"] == task)]
    return float(row["exact_match"].iloc[0]) if len(row) else None


def _linear_summary(frame: pd.DataFrame, model: str) -> dict[str, float]:
    """Mean over attributes of the best layer's accuracy (and the shuffled control / chance there)."""
    rows = frame[frame["model"] == model]
    if rows.empty:
        return {}
    best = rows.loc[rows.groupby("attribute")["acc"].idxmax()]
    return {"acc": float(best["acc"].mean()), "shuffled": float(best["acc_shuffled"].mean()),
            "chance": float(best[["chance_majority", "chance_uniform"]].max(axis=1).mean())}


# Config fields that must agree for the probes to compare, graft and splice two models.
_SHAPE_FIELDS = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size")


def _where(model: ModelArg) -> str:
    """The path of a model given as a path, else its class name."""
    return model_label(model) if isinstance(model, torch.nn.Module) else os.fspath(model)


def _check_same_architecture(models: Mapping[str, tuple[Any, Optional[PreTrainedModel]]]) -> None:
    """Raise :class:`MismatchError` when the models differ in type, depth, width or vocabulary."""
    present = [(name, arg, model) for name, (arg, model) in models.items() if model is not None]
    ref_name, ref_arg, ref = present[0]
    for name, arg, model in present[1:]:
        for key in _SHAPE_FIELDS:
            mine, theirs = getattr(model.config, key, None), getattr(ref.config, key, None)
            if mine != theirs:
                raise MismatchError(f"{key} is {mine!r} here but {theirs!r} in {ref_name} ({_where(ref_arg)}): "
                                    "the probes compare models of one architecture", _where(arg))


def diagnose(
    before: ModelArg,
    after: ModelArg,
    old_task_records: Optional[Sequence[Any]] = None,
    *,
    base: Optional[ModelArg] = None,
    new_task_records: Optional[Sequence[Any]] = None,
    pretraining_records: Optional[Sequence[Any]] = None,
    audit_result: Any = None,
    tokenizer: Optional[PreTrainedTokenizerBase] = None,
    recovery_records: Optional[Sequence[Any]] = None,
    probes: Sequence[str] = PROBES,
    rules: VerdictRules = VerdictRules(),
    recovery: RecoverySettings = RecoverySettings(),
    test_fraction: float = 0.5,
    seed: int = 0,
    max_candidates: Optional[int] = 20,
    linear_test_fraction: float = 0.3,
    compute_audit: bool = True,
    audit_rank: int = 8,
    restore: float = 0.5,
    graft_ks: Optional[Sequence[int]] = None,
    eval_batch_size: int = 256,
) -> Diagnosis:
    """Diagnose the forgetting of the old task between ``before`` and ``after``.

    Args:
        before: the model after the old task, before the new one (model or HF directory).
        after: the model after the new task.
        old_task_records: old-task prompt/completion records (``attribute`` and ``person_id``
            recommended); None runs the geometry only (no verdict).
        base: a model that never learned the old task (e.g. the pretrained base): the
            recovery control, and the start of the audit chain base → before → after.
        new_task_records: new-task records (grafting and the accuracy table report them).
        pretraining_records: the old-task facts in the pretraining format (format probe).
        audit_result: an :class:`~spurious_diag.audit.AuditResult` or its summary dict.
        tokenizer: required when the models are objects; else loaded from ``after``/``before``.
        recovery_records: old-task records about other individuals for recovery; when given,
            all of ``old_task_records`` are held out; else ``old_task_records`` is split.
        probes: which of :data:`PROBES` to run.
        rules: thresholds of the verdict.
        recovery: recovery settings (lr, steps, n; the same for the control).
        test_fraction, seed: the held-out share of individuals and the split / probe seed.
        max_candidates: candidate-pool cap of the format probe's ranking (None: whole pool).
        linear_test_fraction: the linear probes' own person-disjoint test share.
        compute_audit: run an audit when ``audit_result`` is None (rank ``audit_rank``).
        restore: the grafting restoration fraction that counts as "most".
        graft_ks: the graft depths k to try (default all of 0..L; thin out for deep models).
        eval_batch_size: sequences per forward pass when scoring.

    Returns:
        :class:`Diagnosis`.

    Raises:
        UsageError: an unknown probe name.
        CheckpointNotFoundError: no ``tokenizer`` given and none saved with the models.
        InvalidDataError: ``recovery_records`` sharing individuals with ``old_task_records``; old-task
            records of a single individual (nothing to split).
        MismatchError: models of different type, depth, width or vocabulary.
    """
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise UsageError(f"unknown probes {sorted(unknown)}; choose from {list(PROBES)}")
    wanted = set(probes)
    if tokenizer is None:
        tokenizer = load_tokenizer_for(after, before, base)
    settings: dict[str, Any] = {
        "inputs": {"before": model_label(before), "after": model_label(after),
                   "base": model_label(base) if base is not None else None},
        "rules": rules.to_dict(), "recovery": recovery.to_dict(), "probes": list(probes),
        "test_fraction": test_fraction, "seed": seed, "max_candidates": max_candidates,
        "linear_test_fraction": linear_test_fraction, "restore": restore,
    }
    m_before, m_after = load_causal_lm(before), load_causal_lm(after)
    m_base = load_causal_lm(base) if base is not None else None
    _check_same_architecture({"before": (before, m_before), "after": (after, m_after), "base": (base, m_base)})
    num_layers = model_num_layers(m_after)
    settings["num_layers"] = num_layers
    models = {"before": m_before, "after": m_after}
    if m_base is not None:
        models["base"] = m_base

    frames: dict[str, pd.DataFrame] = {}
    evidence: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    inputs = VerdictInputs()
    held: list[ProbeRecord] = []
    pool: list[ProbeRecord] = []
    new = as_probe_records(new_task_records) if new_task_records else []

    if old_task_records:
        old = as_probe_records(old_task_records)
        if recovery_records:
            pool, held = as_probe_records(recovery_records), old
            if has_person_ids(pool) and has_person_ids(held):
                shared = {r.person_id for r in pool} & {r.person_id for r in held}
                if shared:
                    raise InvalidDataError(f"recovery records share {len(shared)} individuals with the old-task records")
        else:
            pool, held = split_by_person(old, test_fraction=test_fraction, seed=seed)
        split_by = "recovery_records" if recovery_records else ("person_id" if has_person_ids(old) else "record")
        settings["split"] = {"by": split_by, "held_out_records": len(held),
                             "recovery_pool_records": len(pool)}
        rows = _accuracy_rows(models, tokenizer, "old", held, eval_batch_size)
        if new:
            rows += _accuracy_rows(models, tokenizer, "new", new, eval_batch_size)
        frames["accuracy"] = pd.DataFrame(rows)
        inputs.acc_before = _acc(frames["accuracy"], "before", "old")
        inputs.acc_after = _acc(frames["accuracy"], "after", "old")
        evidence.update({"acc_before": inputs.acc_before, "acc_after": inputs.acc_after,
                         "drop": inputs.acc_before - inputs.acc_after})  # type: ignore[operator]
        if m_base is not None:
            evidence["acc_base"] = _acc(frames["accuracy"], "base", "old")
        if new:
            evidence["new_before"] = _acc(frames["accuracy"], "before", "new")
            evidence["new_after"] = _acc(frames["accuracy"], "after", "new")
    else:
        for probe in ("recovery", "format", "linear", "grafting", "shift"):
            if probe in wanted:
                skipped[probe] = "no old-task records"

    def want(probe: str, missing: Optional[str] = None) -> bool:
        if probe not in wanted:
            skipped.setdefault(probe, "not requested")
            return False
        if probe in skipped:
            return False
        if missing is not None:
            skipped[probe] = missing
            return False
        return True

    if want("recovery", None if pool else "no old-task records about other individuals to recover with"):
        result = run_recovery(m_after, tokenizer, pool, held, control=m_base, acc_before=inputs.acc_before,
                              settings=recovery, eval_batch_size=eval_batch_size)
        frames["recovery"] = result.table
        inputs.recovery = result.table
        if m_base is None:
            skipped["recovery control"] = "no --base model: recovery ran without its control, so it does not vote"
        rec = result.table[(result.table["n"] > 0)]
        forgot = rec[rec["model"] == "forgot"]
        if len(forgot):
            best = forgot.loc[forgot["recovery_fraction"].idxmax()] if forgot["recovery_fraction"].notna().any() \
                else forgot.iloc[-1]
            evidence["recovery_best_n"] = int(best["n"])
            evidence["recovery_fraction"] = float(best["recovery_fraction"])
            evidence["recovery_acc"] = float(best["acc"])
            control = rec[(rec["model"] == "control") & (rec["n"] == best["n"])]
            if len(control):
                evidence["recovery_control_fraction"] = float(control["recovery_fraction"].iloc[0])
                evidence["recovery_control_acc"] = float(control["acc"].iloc[0])

    if want("format", None if pretraining_records else "no pretraining-format records"):
        try:
            fp = format_probe(models, tokenizer, held, pretraining_records or [], max_candidates=max_candidates,
                              seed=seed, batch_size=eval_batch_size)
        except InvalidDataError as exc:
            skipped["format"] = str(exc)
        else:
            frames["format"] = fp.per_attribute
            frames["format_overall"] = fp.overall
            inputs.pretraining_before = fp.accuracy("before", "pretraining")
            inputs.pretraining_after = fp.accuracy("after", "pretraining")
            for name in models:
                for fmt in ("task", "pretraining"):
                    evidence[f"{fmt}_format_{name}"] = fp.accuracy(name, fmt)
                    evidence[f"{fmt}_format_top1_{name}"] = fp.accuracy(name, fmt, "top1")

    if want("linear"):
        try:
            frame = linear_probe(models, tokenizer, held, test_fraction=linear_test_fraction, seed=seed,
                                 batch_size=eval_batch_size)
        except InvalidDataError as exc:
            skipped["linear"] = str(exc)
        else:
            frames["linear_probe"] = frame
            for name in models:
                for key, value in _linear_summary(frame, name).items():
                    evidence[f"linear_probe_{key}_{name}"] = value

    grafting: Optional[pd.DataFrame] = None
    if want("grafting"):
        grafting = grafting_curve(m_before, m_after, tokenizer, held, new or None, ks=graft_ks,
                                  batch_size=eval_batch_size)
        if inputs.acc_before is not None and inputs.acc_after is not None:
            grafting = restored_fractions(grafting, inputs.acc_before, inputs.acc_after)
        frames["grafting"] = grafting
        ok = grafting[grafting["status"] == "ok"]
        bottom = ok[ok["arm"] == "bottom"].set_index("k")["old_acc"]
        top = ok[ok["arm"] == "top"].set_index("k")["old_acc"]
        both = [k for k in range(1, num_layers) if k in bottom.index and k in top.index]
        if both:
            evidence["graft_bottom_minus_top"] = float(sum(bottom[k] - top[k] for k in both) / len(both))
        for k, value in bottom.items():
            evidence[f"graft_bottom_k{int(k)}_old_acc"] = float(value)

    if want("shift"):
        frames["residual_shift"] = residual_shift(m_before, m_after, tokenizer, held, batch_size=eval_batch_size)
        shift = frames["residual_shift"]
        evidence["shift_min_cka"] = float(shift["cka"].min())
        evidence["shift_min_cka_layer"] = int(shift.loc[shift["cka"].idxmin(), "layer"])

    audit_summary: Optional[Mapping[str, Any]] = None
    if want("geometry"):
        if audit_result is not None:
            audit_summary = getattr(audit_result, "summary", audit_result)
        elif compute_audit:
            from ..audit import AuditOptions, audit

            # Paths stream one tensor at a time from disk; model objects are read in memory.
            chain = [arg if not isinstance(arg, torch.nn.Module) else loaded
                     for arg, loaded in ((base, m_base), (before, m_before), (after, m_after)) if loaded is not None]
            logger.info("auditing the update geometry of %d checkpoints", len(chain))
            audit_summary = audit(chain, AuditOptions(rank=audit_rank, seed=seed), progress=False).summary
            if m_base is None:
                skipped["geometry angles"] = "no --base model: one update (before → after), sizes only"
        else:
            skipped["geometry"] = "no audit result and compute_audit=False"
        if audit_summary is not None:
            _, _, geo = depth_from_geometry(audit_summary, num_layers)
            frames["geometry"] = geo

    verdict, outcomes, reason = decide(inputs, rules)
    recommendation = recommend_freeze_depth(
        num_layers, grafting=grafting, acc_before=inputs.acc_before, acc_after=inputs.acc_after,
        audit_summary=audit_summary, restore=restore)
    if verdict == "real" and recommendation.k is not None:
        recommendation = replace(recommendation, reasoning=recommendation.reasoning + (
            " The forgetting is real: freezing protects the old task's alignment, not facts that later training "
            "overwrites, so expect little from it here."))
    logger.info("verdict: %s (%s); recommended freeze depth: %s", verdict, reason, recommendation.k)
    return Diagnosis(verdict, reason, outcomes, evidence, frames, recommendation, skipped, settings)
