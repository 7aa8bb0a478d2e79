"""Recovery: can a few old-task examples about *other* individuals bring the old task back?

Fine-tune a copy of the forgotten model briefly on n old-task records about individuals
disjoint from the test set, then score held-out individuals (greedy exact match, mean over
attributes). Knowledge that is still in the weights comes back with a handful of examples;
knowledge that is gone cannot, since the test individuals' facts are never shown.

    recovery fraction = (acc_rec − acc_forgot) / (acc_before − acc_forgot)

acc_before: the model before forgetting; acc_forgot: the forgotten model before recovery;
acc_rec: after recovery. The control applies the identical procedure (same records, lr, steps,
batch, seed) to a model that never learned the old task (e.g. the pretrained base); its
fraction uses the *same* denominator, ``(acc_ctrl_rec − acc_forgot) / (acc_before −
acc_forgot)``, so the two fractions differ exactly by (acc_rec − acc_ctrl_rec) / (acc_before −
acc_forgot). The control matters: in the Biography pilot it reached 0.17 at lr 1e-4 but 0.51 at
3e-4 (DESIGN.md §5).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError
from ..ties import first_best
from ..training.evaluate import EVAL_BATCH_SIZE, evaluate_records
from ..training.settings import TrainSettings
from ..training.trainer import train_model
from .options import RecoverySettings
from .records import as_probe_records, has_person_ids

__all__ = ["RecoveryResult", "RECOVERY_COLUMNS", "recovery_fraction", "run_recovery",
           "select_recovery_settings"]

logger = logging.getLogger(__name__)

RECOVERY_COLUMNS = ["n", "model", "acc_start", "acc", "recovery_fraction", "steps", "lr"]


@dataclass
class RecoveryResult:
    """Output of :func:`run_recovery`.

    Attributes:
        table: one row per (n, model) with :data:`RECOVERY_COLUMNS`; ``model`` is ``forgot`` or
            ``control``; n = 0 rows hold the unrecovered accuracies (``acc`` = ``acc_start``).
        acc_before: old-task accuracy before forgetting (the denominator's reference), or NaN.
        acc_forgot: the forgotten model's accuracy before recovery.
        settings: the :class:`RecoverySettings` used.
        skipped_ns: requested n larger than the example pool.
    """

    table: pd.DataFrame
    acc_before: float
    acc_forgot: float
    settings: RecoverySettings
    skipped_ns: tuple[int, ...] = ()

    def fraction(self, n: int, model: str = "forgot") -> float:
        """The recovery fraction of one row (NaN when absent)."""
        row = self.table[(self.table["n"] == n) & (self.table["model"] == model)]
        return float(row["recovery_fraction"].iloc[0]) if len(row) else math.nan


def recovery_fraction(acc_rec: float, acc_forgot: float, acc_before: float, *, min_gap: float = 1e-9) -> float:
    """(acc_rec − acc_forgot) / (acc_before − acc_forgot); NaN when the gap is ≤ ``min_gap``
    (nothing was forgotten, so there is nothing to recover).

    >>> round(recovery_fraction(0.54, 0.21, 0.90), 4)
    0.4783
    >>> recovery_fraction(0.5, 0.5, 0.5)
    nan
    """
    gap = acc_before - acc_forgot
    if not gap > min_gap:
        return math.nan
    return (acc_rec - acc_forgot) / gap


def _accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[dict[str, Any]],
              batch_size: int) -> float:
    return evaluate_records(model, tokenizer, records, batch_size=batch_size).exact_match


def run_recovery(
    forgot: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    recovery_records: Sequence[Any],
    test_records: Sequence[Any],
    *,
    control: Optional[PreTrainedModel] = None,
    before: Optional[PreTrainedModel] = None,
    acc_before: Optional[float] = None,
    settings: RecoverySettings = RecoverySettings(),
    eval_batch_size: int = EVAL_BATCH_SIZE,
) -> RecoveryResult:
    """Recover copies of ``forgot`` (and of ``control``) with n examples, for each n in ``settings.ns``.

    Args:
        forgot: the model that lost the old task (never modified: each run trains a deep copy).
        recovery_records: old-task records about individuals NOT in ``test_records`` (the pool
            the n examples are drawn from).
        test_records: held-out old-task records (scored with ``<eos>``: QA format).
        control: a model that never learned the old task, recovered identically; None skips it.
        before: the model before forgetting, scored on ``test_records`` for ``acc_before``;
            or pass ``acc_before`` directly.
        settings: :class:`RecoverySettings`.

    Returns:
        :class:`RecoveryResult`.

    Raises:
        InvalidDataError: empty record sets, or individuals shared by the two sets.
    """
    pool = as_probe_records(recovery_records)
    test = as_probe_records(test_records)
    if not pool or not test:
        raise InvalidDataError("recovery needs recovery records and test records")
    if has_person_ids(pool) and has_person_ids(test):
        shared = {r.person_id for r in pool} & {r.person_id for r in test}
        if shared:
            raise InvalidDataError(f"recovery records and test records share {len(shared)} individuals")
    test_json = [r.as_json() for r in test]
    order = [r.as_json() for r in pool]
    random.Random(settings.seed).shuffle(order)
    if acc_before is None:
        acc_before = _accuracy(before, tokenizer, test_json, eval_batch_size) if before is not None else math.nan
    acc_forgot = _accuracy(forgot, tokenizer, test_json, eval_batch_size)
    models = {"forgot": forgot}
    if control is not None:
        models["control"] = control
    starts = {name: (acc_forgot if name == "forgot" else _accuracy(m, tokenizer, test_json, eval_batch_size))
              for name, m in models.items()}
    rows = [{"n": 0, "model": name, "acc_start": acc, "acc": acc,
             "recovery_fraction": recovery_fraction(acc, acc_forgot, acc_before), "steps": 0, "lr": settings.lr}
            for name, acc in starts.items()]
    ns = sorted({int(n) for n in settings.ns if n > 0})
    usable = [n for n in ns if n <= len(order)]
    skipped = tuple(n for n in ns if n > len(order))
    if skipped:
        logger.warning("recovery: only %d examples about other individuals; skipping n = %s", len(order), skipped)
    for n in usable:
        for name, model in models.items():
            trained = copy.deepcopy(model)
            train_model(trained, tokenizer, order[:n], TrainSettings(
                steps=settings.steps, lr=settings.lr, batch_size=min(settings.batch_size, n),
                weight_decay=settings.weight_decay), seed=settings.seed,
                device=next(trained.parameters()).device.type)  # train where the model is
            acc = _accuracy(trained, tokenizer, test_json, eval_batch_size)
            del trained
            frac = recovery_fraction(acc, acc_forgot, acc_before)
            logger.info("recovery n=%d %s: %.3f -> %.3f (%s)", n, name, starts[name], acc,
                        f"fraction {frac:.3f}" if math.isfinite(frac) else
                        "no fraction: the accuracy before forgetting was not given" if math.isnan(acc_before) else
                        "no fraction: nothing was forgotten")
            rows.append({"n": n, "model": name, "acc_start": starts[name], "acc": acc, "recovery_fraction": frac,
                         "steps": settings.steps, "lr": settings.lr})
    table = pd.DataFrame(rows, columns=RECOVERY_COLUMNS)
    return RecoveryResult(table, float(acc_before), float(acc_forgot), settings, skipped)


def select_recovery_settings(
    forgot: PreTrainedModel,
    control: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    recovery_records: Sequence[Any],
    validation_records: Sequence[Any],
    candidates: Sequence[RecoverySettings],
    *,
    n: int = 100,
    eval_batch_size: int = EVAL_BATCH_SIZE,
) -> tuple[RecoverySettings, pd.DataFrame]:
    """Choose the recovery learning rate and steps on *validation* individuals, never the test ones.

    Each candidate recovers ``forgot`` and ``control`` with the same ``n`` examples; the chosen
    one has the largest margin ``acc(forgot recovered) − acc(control recovered)`` on
    ``validation_records`` (the first candidate wins ties, also ties within float noise:
    :func:`~spurious_diag.ties.first_best`). That margin is what recovery beyond
    "n examples teach it from scratch" means, so it is the quantity worth maximizing.

    Args:
        forgot, control: as in :func:`run_recovery` (never modified).
        recovery_records: the pool of recovery examples (other individuals).
        validation_records: old-task records about individuals in neither the pool nor the test set.
        candidates: settings to compare (their ``ns`` are ignored; ``n`` is used).
        n: recovery examples per candidate.

    Returns:
        (the chosen candidate, with its original ``ns``; one row per candidate with ``lr``,
        ``steps``, ``acc_forgot``, ``acc_control`` and ``margin``).

    Raises:
        InvalidDataError: no candidates, or the record sets of :func:`run_recovery`.
    """
    if not candidates:
        raise InvalidDataError("no recovery settings to choose from")
    rows = []
    for candidate in candidates:
        result = run_recovery(forgot, tokenizer, recovery_records, validation_records, control=control,
                              settings=dataclasses.replace(candidate, ns=(n,)), eval_batch_size=eval_batch_size)
        acc = result.table[result.table["n"] == n].set_index("model")["acc"]
        rows.append({"lr": candidate.lr, "steps": candidate.steps, "n": n, "acc_forgot": float(acc["forgot"]),
                     "acc_control": float(acc["control"]), "margin": float(acc["forgot"] - acc["control"])})
    table = pd.DataFrame(rows)
    best = first_best(table["margin"].tolist())
    table["chosen"] = [i == best for i in range(len(table))]
    logger.info("recovery settings chosen on validation: lr %g, %d steps (margin over control %.3f)",
                candidates[best].lr, candidates[best].steps, table["margin"].iloc[best])
    return candidates[best], table
