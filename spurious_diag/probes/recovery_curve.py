"""Recovery over time: is the old task still *recoverable* from each checkpoint of a run?

The paper's headline ("96% of Task 0 still recoverable after 150 steps of Task 1") is a curve:
from every checkpoint t of the new task, the few-shot recovery of :mod:`.recovery` (n old-task
examples about *other* individuals, a short fine-tune, scored on held-out individuals), as the
fraction (acc_rec − acc_t) / (acc_before − acc_t). The never-aligned control (e.g. the pretrained
base) is recovered once with the identical settings; its accuracy does not depend on t, but its
fraction does, through acc_t, so it is reported per step beside the model's.

Memory: the working model and one recovered copy at a time (two models).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..training.evaluate import EVAL_BATCH_SIZE
from .forgetting_map import DEFAULT_MIN_GAP
from .options import RecoverySettings
from .recovery import recovery_fraction, run_recovery
from .run_steps import StepSource, each_step

__all__ = ["RECOVERY_BY_STEP_COLUMNS", "recovered_accuracies", "recovery_by_step"]

logger = logging.getLogger(__name__)

RECOVERY_BY_STEP_COLUMNS = ["step", "n", "acc", "control_acc", "fraction", "control_fraction", "acc_step",
                            "acc_before"]


def recovered_accuracies(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, recovery_records: Sequence[Any],
                         test_records: Sequence[Any], settings: RecoverySettings, *, eval_batch_size: int = EVAL_BATCH_SIZE
                         ) -> tuple[float, dict[int, float]]:
    """(accuracy before recovery, {n: accuracy after recovering with n examples}) of one model."""
    result = run_recovery(model, tokenizer, recovery_records, test_records, settings=settings,
                          eval_batch_size=eval_batch_size)
    rows = result.table[(result.table["model"] == "forgot") & (result.table["n"] > 0)]
    return result.acc_forgot, {int(n): float(acc) for n, acc in zip(rows["n"], rows["acc"])}


def recovery_by_step(
    model: PreTrainedModel,
    steps: Sequence[tuple[int, StepSource]],
    tokenizer: PreTrainedTokenizerBase,
    recovery_records: Sequence[Any],
    test_records: Sequence[Any],
    *,
    acc_before: float,
    settings: RecoverySettings = RecoverySettings(),
    control: Optional[PreTrainedModel] = None,
    control_accs: Optional[dict[int, float]] = None,
    min_gap: float = DEFAULT_MIN_GAP,
    eval_batch_size: int = EVAL_BATCH_SIZE,
    progress: bool = True,
) -> pd.DataFrame:
    """The recovery fraction over the steps of a run, with its never-aligned control.

    Args:
        model: the working model (each checkpoint is loaded into it in turn).
        steps: ``(step, checkpoint)`` pairs (a path is loaded lazily), as in
            :func:`~.forgetting_map.forgetting_map`.
        recovery_records: old-task records about individuals NOT in ``test_records``.
        test_records: held-out old-task records.
        acc_before: the old-task accuracy before the new task (the fraction's reference).
        settings: the recovery (chosen beforehand, e.g. on validation individuals); every n
            in ``settings.ns`` is run from every checkpoint.
        control: a model that never learned the old task, recovered once (never modified); or
            pass its ``control_accs`` ({n: accuracy after recovery}); neither leaves the control
            columns NaN.
        min_gap: the fractions are NaN where acc_before − acc_step < min_gap (nothing to recover).

    Returns:
        :data:`RECOVERY_BY_STEP_COLUMNS`, one row per step × n: ``acc`` after recovery,
        ``control_acc`` (the control after the same recovery), ``fraction`` and
        ``control_fraction`` (both over acc_before − acc_step), ``acc_step`` (before recovery).
    """
    if control_accs is None and control is not None:
        _, control_accs = recovered_accuracies(control, tokenizer, recovery_records, test_records, settings,
                                               eval_batch_size=eval_batch_size)
    control_accs = control_accs or {}
    rows = []
    for step, _ in each_step(model, steps, desc="recovery by step", progress=progress):
        acc_step, accs = recovered_accuracies(model, tokenizer, recovery_records, test_records, settings,
                                              eval_batch_size=eval_batch_size)
        for n, acc in accs.items():
            control_acc = control_accs.get(n, math.nan)
            rows.append({"step": step, "n": n, "acc": acc, "control_acc": control_acc,
                         "fraction": recovery_fraction(acc, acc_step, acc_before, min_gap=min_gap),
                         "control_fraction": recovery_fraction(control_acc, acc_step, acc_before, min_gap=min_gap),
                         "acc_step": acc_step, "acc_before": acc_before})
        logger.info("recovery from step %d: %.3f -> %s", step, acc_step,
                    ", ".join(f"n={n}: {acc:.3f}" for n, acc in accs.items()))
    return pd.DataFrame(rows, columns=RECOVERY_BY_STEP_COLUMNS)
