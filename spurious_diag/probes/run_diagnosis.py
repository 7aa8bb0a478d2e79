"""Diagnose a whole run: the forgetting maps and the recovery curve over a directory of Trainer
``checkpoint-N`` folders (what ``spurious-diag diagnose BEFORE RUN_DIR`` runs).

Given the model before the new task and the checkpoints of the run on it:

1. the old-task records are split into held-out individuals and recovery examples exactly as
   :func:`~.diagnose.diagnose` splits them;
2. the **forgetting map** (:mod:`.forgetting_map`): per checkpoint and layer, the share of the lost
   old-task accuracy that comes back when that layer alone (``single``) or the bottom layers up to
   it (``bottom``) are put back to their values before the new task;
3. the **probe map** (``linear`` among the probes): the linear probes per layer and checkpoint;
4. the **recovery curve** (``recovery`` among the probes): the few-shot recovery of
   :mod:`.recovery` from every checkpoint, with ``base`` as the never-aligned control.

The checkpoints are read lazily, one tensor at a time, into one working model; the ``before``
weights stay beside it: never more than two models in memory (three while the control, when
given, is recovered once at the start).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import pandas as pd
from transformers import PreTrainedTokenizerBase

from ..devices import check_device, model_dtype
from ..errors import InvalidDataError, UsageError
from ..io.chain import list_chain
from .forgetting_map import exact_match_scorer, forgetting_map, probe_map, restoring_at
from .grafting import model_num_layers
from .models import ModelArg, load_causal_lm, load_tokenizer_for, model_label
from .options import DiagnoseOptions
from .records import split_old_task
from .recovery_curve import recovery_by_step
from .run_steps import load_step, open_step

__all__ = ["RunDiagnosis", "select_steps", "diagnose_run", "summarize_run"]

logger = logging.getLogger(__name__)


@dataclass
class RunDiagnosis:
    """What :func:`diagnose_run` measured.

    Attributes:
        frames: ``forgetting_map``, and ``probe_map`` / ``recovery_by_step`` when those probes ran.
        summary: :func:`summarize_run` of the frames.
        settings: the inputs, the steps read, the split and the options.
        skipped: probe → why it did not run.
    """

    frames: dict[str, pd.DataFrame] = field(repr=False)
    summary: dict[str, Any]
    settings: dict[str, Any]
    skipped: dict[str, str]


def select_steps(steps: Sequence[tuple[int, str]], every: int) -> list[tuple[int, str]]:
    """Every ``every``-th checkpoint of a chain, always with its first and last.

    >>> select_steps([(s, f"c{s}") for s in (0, 5, 10, 15, 20)], 2)
    [(0, 'c0'), (10, 'c10'), (20, 'c20')]
    >>> [s for s, _ in select_steps([(s, "") for s in (5, 10, 15, 20)], 3)]
    [5, 20]
    """
    if every < 1:
        raise UsageError(f"every must be >= 1, got {every}")
    ordered = sorted(steps)
    kept = [item for i, item in enumerate(ordered) if i % every == 0]
    if ordered and kept[-1] != ordered[-1]:
        kept.append(ordered[-1])
    return kept


def diagnose_run(
    before: ModelArg,
    run_dir: "os.PathLike[str] | str",
    old_task_records: Sequence[Any],
    *,
    base: Optional[ModelArg] = None,
    recovery_records: Optional[Sequence[Any]] = None,
    tokenizer: Optional[PreTrainedTokenizerBase] = None,
    options: DiagnoseOptions = DiagnoseOptions(),
    every: int = 1,
    progress: bool = True,
) -> RunDiagnosis:
    """The forgetting maps and the recovery curve of a run on the new task.

    Args:
        before: the model before the new task (HF directory, or a model).
        run_dir: a directory of Trainer ``checkpoint-N`` folders (the run on the new task); each
            folder must hold the weights and ``config.json`` (the tokenizer may live in ``before``).
        old_task_records: old-task prompt/completion records (``attribute``, ``person_id`` recommended).
        base: a model that never learned the old task (the recovery control), or None.
        recovery_records: old-task records about other individuals; else ``old_task_records`` is split.
        tokenizer: required when ``before`` is a model object without a saved tokenizer.
        options: :class:`~.options.DiagnoseOptions` (``probes``: ``linear`` adds the probe map,
            ``recovery`` the recovery curve; ``map_layers``: the map's rows; the recovery settings,
            split and seed).
        every: read every ``every``-th checkpoint (the first and last always).

    Returns:
        :class:`RunDiagnosis`.

    Raises:
        CheckpointNotFoundError: ``run_dir`` holds no ``checkpoint-N`` folder, or a model is missing.
        MismatchError: a checkpoint of another architecture than ``before``.
        InvalidDataError: no old-task records, or records that cannot be split.
    """
    if not old_task_records:
        raise InvalidDataError("diagnosing a run needs old-task records")
    steps = select_steps(list_chain(os.fspath(run_dir)), every)
    first_path = steps[0][1]
    if tokenizer is None:
        tokenizer = load_tokenizer_for(before, first_path, base)
    device, dtype = str(check_device(options.device)), model_dtype(options.dtype)
    model = load_causal_lm(first_path, dtype=dtype, device=device)  # every step is loaded into this one model
    held, pool, split = split_old_task(old_task_records, recovery_records, test_fraction=options.test_fraction,
                                       seed=options.seed)
    score = exact_match_scorer(tokenizer, held, batch_size=options.eval_batch_size)
    before_state = before.state_dict() if hasattr(before, "state_dict") else open_step(os.fspath(before))
    load_step(model, before_state)
    acc_before = score(model)
    logger.info("run %s: %d checkpoints (every %d), old task before the new one %.3f on %d held-out records",
                run_dir, len(steps), every, acc_before, len(held))
    frames: dict[str, pd.DataFrame] = {
        "forgetting_map": forgetting_map(model, before_state, steps, score, acc_before=acc_before,
                                         layers=options.map_layers, progress=progress)}
    skipped: dict[str, str] = {}
    if "linear" in options.probes:
        frames["probe_map"] = probe_map(model, steps, tokenizer, held, seed=options.seed,
                                        test_fraction=options.linear_test_fraction,
                                        batch_size=options.eval_batch_size, progress=progress)
    else:
        skipped["linear"] = "not requested"
    if "recovery" in options.probes:
        control = load_causal_lm(base, dtype=dtype, device=device) if base is not None else None
        if control is None:
            skipped["recovery control"] = "no --base model"
        frames["recovery_by_step"] = recovery_by_step(
            model, steps, tokenizer, pool, held, acc_before=acc_before, settings=options.recovery, control=control,
            eval_batch_size=options.eval_batch_size, progress=progress)
        del control
    else:
        skipped["recovery"] = "not requested"
    settings = {"inputs": {"before": model_label(before), "run_dir": os.fspath(run_dir),
                           "base": model_label(base) if base is not None else None},
                "steps": [s for s, _ in steps], "every": every, "split": split, "acc_before": acc_before,
                **options.to_dict()}
    return RunDiagnosis(frames, summarize_run(frames, acc_before, model_num_layers(model)), settings, skipped)


def summarize_run(frames: dict[str, pd.DataFrame], acc_before: float, num_layers: int) -> dict[str, Any]:
    """The run's headline numbers: its dip (the checkpoint of lowest old-task accuracy), the layer
    whose revert alone restores most there, the shallowest bottom revert restoring half, and the
    recovery fraction at the dip and at the last checkpoint."""
    fmap = frames["forgetting_map"]
    by_step = fmap.groupby("step")["acc_step"].first()
    dip = int(by_step.idxmin())
    out: dict[str, Any] = {"acc_before": acc_before, "dip_step": dip, "acc_dip": float(by_step.loc[dip]),
                           "last_step": int(by_step.index.max()), "acc_last": float(by_step.iloc[-1]),
                           "num_layers": num_layers, **restoring_at(fmap, dip)}
    recovery = frames.get("recovery_by_step")
    if recovery is not None and not recovery.empty:
        best_n = int(recovery["n"].max())
        rows = recovery[recovery["n"] == best_n].set_index("step")
        out["recovery"] = {"n": best_n, **{
            name: {"step": int(step), "fraction": _float(rows.loc[step, "fraction"]),
                   "control_fraction": _float(rows.loc[step, "control_fraction"])}
            for name, step in (("dip", dip), ("last", int(rows.index.max()))) if step in rows.index}}
    return out


def _float(x: Any) -> Optional[float]:
    value = float(x)
    return value if math.isfinite(value) else None
