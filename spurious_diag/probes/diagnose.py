"""``diagnose``: run the probes that the inputs allow and give a verdict on the forgetting.

Given the model before Task 1 (``before``) and after (``after``), and old-task records:

1. split the old-task records into *held-out* individuals (every score is on these) and
   *other* individuals (the recovery examples), by ``person_id`` when present, else by a seeded
   record split (or take ``recovery_records`` as the other individuals);
2. score the old task (and the new task) for before / after (/ base): the ``accuracy`` table;
3. run the probes (:mod:`.runners`, one each): ``recovery`` (control = ``base``), ``format``
   (with pretraining-format records), ``linear`` (probes per layer), ``grafting`` (bottom / top
   / embeddings), ``shift`` (residual stream before → after), ``geometry`` (an
   :func:`~spurious_diag.updates.engine.audit` result, passed in or computed from base → before → after);
4. apply the numeric rules of :mod:`.rules` (thresholds in :class:`~.options.VerdictRules`):
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
import os
import time
from dataclasses import replace
from typing import Any, Mapping, Optional, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..devices import check_device, model_dtype
from ..errors import MismatchError
from ..io.adapter import is_lora_adapter
from ..training.evaluate import evaluate_records
from .diagnosis import Diagnosis
from .grafting import model_num_layers
from .models import ModelArg, load_adapted_lm, load_causal_lm, load_tokenizer_for, model_label
from .options import DiagnoseOptions
from .recommend import recommend_freeze_depth
from .records import ProbeRecord, as_probe_records, split_old_task
from .rules import VerdictInputs, decide
from .runners import OLD_TASK_PROBES, RUNNERS, ProbeContext, missing_input, model_chain

__all__ = ["diagnose"]

logger = logging.getLogger(__name__)

# Config fields that must agree for the probes to compare, graft and splice two models.
_SHAPE_FIELDS = ("model_type", "num_hidden_layers", "hidden_size", "vocab_size")


def diagnose(
    before: ModelArg,
    after: ModelArg,
    old_task_records: Optional[Sequence[Any]] = None,
    *,
    base: Optional[ModelArg] = None,
    new_task_records: Optional[Sequence[Any]] = None,
    pretraining_records: Optional[Sequence[Any]] = None,
    recovery_records: Optional[Sequence[Any]] = None,
    audit_result: Any = None,
    tokenizer: Optional[PreTrainedTokenizerBase] = None,
    options: DiagnoseOptions = DiagnoseOptions(),
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
        recovery_records: old-task records about other individuals for recovery; when given,
            all of ``old_task_records`` are held out; else ``old_task_records`` is split.
        audit_result: an :class:`~spurious_diag.updates.engine.AuditResult` or its summary dict.
        tokenizer: required when the models are objects; else loaded from ``after``/``before``.
        options: :class:`~.options.DiagnoseOptions` (probes, recovery settings, rules, seeds).

    Returns:
        :class:`~.diagnosis.Diagnosis`.

    Raises:
        CheckpointNotFoundError: no ``tokenizer`` given and none saved with the models.
        InvalidDataError: ``recovery_records`` sharing individuals with ``old_task_records``; old-task
            records of a single individual (nothing to split).
        MismatchError: models of different type, depth, width or vocabulary.
    """
    if tokenizer is None:
        tokenizer = load_tokenizer_for(after, before, base)
    settings: dict[str, Any] = {
        "inputs": {"before": model_label(before), "after": model_label(after),
                   "base": model_label(base) if base is not None else None},
        **options.to_dict(),
    }
    # Paths are loaded once, straight onto the device (and dtype) asked for; objects stay where they are.
    device, dtype = str(check_device(options.device)), model_dtype(options.dtype)
    models = {"before": load_causal_lm(before, dtype=dtype, device=device)}
    if not isinstance(after, torch.nn.Module) and is_lora_adapter(os.fspath(after)):
        # A LoRA AFTER was trained on BEFORE: merged into it, it is an ordinary model for every probe
        # (and the geometry audit reads that model, whose update from BEFORE is B·A).
        after = load_adapted_lm(after, before, dtype=dtype, device=device)
    models["after"] = load_causal_lm(after, dtype=dtype, device=device)
    if base is not None:
        models["base"] = load_causal_lm(base, dtype=dtype, device=device)
    _check_same_architecture(models, {"before": before, "after": after, "base": base})
    num_layers = model_num_layers(models["after"])
    settings["num_layers"] = num_layers
    ctx = ProbeContext(models, tokenizer, [], [], as_probe_records(new_task_records) if new_task_records else [],
                       pretraining_records, options, num_layers, audit_result=audit_result,
                       chain=model_chain(base, before, after, models))

    frames: dict[str, pd.DataFrame] = {}
    evidence: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}  # wall time of each probe, reported with the settings
    settings["seconds"] = seconds
    if old_task_records:
        settings["split"] = _split(ctx, old_task_records, recovery_records)
        started = time.perf_counter()
        frames["accuracy"] = _accuracy_table(ctx)
        seconds["accuracy"] = time.perf_counter() - started
        evidence.update(_accuracy_evidence(ctx, frames["accuracy"]))
    else:
        skipped.update({probe: "no old-task records" for probe in OLD_TASK_PROBES if probe in options.probes})

    facts: dict[str, Any] = {}
    for probe, runner in RUNNERS.items():
        if probe not in options.probes:
            skipped.setdefault(probe, "not requested")
            continue
        if probe in skipped:
            continue
        why = missing_input(probe, ctx)
        if why is not None:
            skipped[probe] = why
            continue
        started = time.perf_counter()
        outcome = runner(ctx)
        seconds[probe] = time.perf_counter() - started
        logger.info("%s probe: %.1f s", probe, seconds[probe])
        frames.update(outcome.frames)
        evidence.update(outcome.evidence)
        skipped.update(outcome.skipped)
        facts.update(outcome.facts)

    inputs = VerdictInputs(ctx.acc_before, ctx.acc_after, facts.get("recovery"), facts.get("pretraining_before"),
                           facts.get("pretraining_after"))
    verdict, outcomes, reason = decide(inputs, options.rules)
    recommendation = recommend_freeze_depth(
        num_layers, grafting=facts.get("grafting"), acc_before=ctx.acc_before, acc_after=ctx.acc_after,
        audit_summary=facts.get("audit_summary"), restore=options.restore)
    if verdict == "real" and recommendation.k is not None:
        recommendation = replace(recommendation, reasoning=recommendation.reasoning + (
            " The forgetting is real: freezing protects the old task's alignment, not facts that later training "
            "overwrites, so expect little from it here."))
    logger.info("verdict: %s (%s); recommended freeze depth: %s", verdict, reason, recommendation.k)
    return Diagnosis(verdict, reason, outcomes, evidence, frames, recommendation, skipped, settings)


def _split(ctx: ProbeContext, old_task_records: Sequence[Any], recovery_records: Optional[Sequence[Any]]
           ) -> dict[str, Any]:
    """Fill ``ctx.pool`` and ``ctx.held``; returns how the split was made."""
    ctx.held, ctx.pool, how = split_old_task(old_task_records, recovery_records,
                                             test_fraction=ctx.options.test_fraction, seed=ctx.options.seed)
    return how


def _scores(ctx: ProbeContext, task: str, records: Sequence[ProbeRecord]) -> list[dict[str, Any]]:
    rows = []
    json_records = [r.as_json() for r in records]
    for name, model in ctx.models.items():
        result = evaluate_records(model, ctx.tokenizer, json_records, batch_size=ctx.options.eval_batch_size)
        rows.append({"model": name, "task": task, "n": len(records), "exact_match": result.exact_match,
                     "first_token_acc": result.first_token_acc})
    return rows


def _accuracy_table(ctx: ProbeContext) -> pd.DataFrame:
    """Old-task (and new-task) exact match of every model; sets ``ctx.acc_before`` / ``acc_after``."""
    rows = _scores(ctx, "old", ctx.held) + (_scores(ctx, "new", ctx.new) if ctx.new else [])
    table = pd.DataFrame(rows)
    ctx.acc_before, ctx.acc_after = _acc(table, "before", "old"), _acc(table, "after", "old")
    return table


def _accuracy_evidence(ctx: ProbeContext, table: pd.DataFrame) -> dict[str, Any]:
    evidence: dict[str, Any] = {"acc_before": ctx.acc_before, "acc_after": ctx.acc_after,
                                "drop": ctx.acc_before - ctx.acc_after}  # type: ignore[operator]
    if "base" in ctx.models:
        evidence["acc_base"] = _acc(table, "base", "old")
    if ctx.new:
        evidence["new_before"] = _acc(table, "before", "new")
        evidence["new_after"] = _acc(table, "after", "new")
    return evidence


def _acc(table: pd.DataFrame, model: str, task: str) -> Optional[float]:
    row = table[(table["model"] == model) & (table["task"] == task)]
    return float(row["exact_match"].iloc[0]) if len(row) else None


def _where(model: ModelArg) -> str:
    """The path of a model given as a path, else its class name."""
    return model_label(model) if isinstance(model, torch.nn.Module) else os.fspath(model)


def _check_same_architecture(models: Mapping[str, PreTrainedModel], args: Mapping[str, Any]) -> None:
    """Raise :class:`MismatchError` when the models differ in type, depth, width or vocabulary."""
    names = list(models)
    ref_name, ref = names[0], models[names[0]]
    for name in names[1:]:
        for key in _SHAPE_FIELDS:
            mine, theirs = getattr(models[name].config, key, None), getattr(ref.config, key, None)
            if mine != theirs:
                raise MismatchError(f"{key} is {mine!r} here but {theirs!r} in {ref_name} ({_where(args[ref_name])}): "
                                    "the probes compare models of one architecture", _where(args[name]))
