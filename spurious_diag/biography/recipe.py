"""The Biography benchmark's recipe: how Task 0 and Task 1 are trained and scored (DESIGN.md §5).

One place for the settings that the demo, the benchmarks and the notebook share, so their
numbers are comparable:

- Task 0: QA on the Task 0 training people, from the shipped base model (300 AdamW steps at
  lr 3e-4, batch 32, constant schedule);
- Task 1: QA on new people (400 steps at lr 3e-4), with Task 0 evaluated every 10 steps up to
  step 200 (the dip window) and every 100 after, and Task 1 checked every 10 steps for the
  early-stop point (the first evaluation where it reaches 0.90);
- the probe inputs: held-out Task 0 *test* people, recovery examples about Task 0 *train*
  people, the Task 0 *validation* people for every choice (k, recovery settings), the test
  people's facts in the pretraining format, and the Task 1 records.

``benchmarks/bench_biography.py`` measured these settings over 3 seeds of the Task 1 order.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from ..continual.tasks import EvalSchedule
from ..training.settings import TrainSettings

if TYPE_CHECKING:
    from .scenario import BiographyData
    from .texts import QARecord

__all__ = ["BiographyRecipe", "ProbeInputs", "first_people", "probe_inputs", "TARGETS", "check_targets"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BiographyRecipe:
    """Training and evaluation settings of the two Biography tasks.

    Attributes:
        task0_steps, task0_lr: Task 0 from the pretrained base.
        task1_steps, task1_lr: Task 1 from the Task 0 model (every method).
        batch_size: sequences per optimizer step (both tasks).
        early_stop: Task 1 exact match that marks its early-stop point.
        dip_window: Task 1 steps in which the Task 0 dip is looked for (and evaluated densely).
        dense_every, sparse_every: Task 0 evaluation period (steps) inside / after the window.
        stop_check_every: period (steps) of the Task 1 early-stop check.
        checkpoint_every: period (steps) of weight-only checkpoints inside the window, when
            checkpoints are saved (geometric after it).
        train_past_stop: Task 1 trains on to ``task1_steps`` after its early-stop point (its end
            is then a point of its own); False ends it there, which is all a comparison at early
            stop needs and saves the steps after it.
    """

    task0_steps: int = 300
    task0_lr: float = 3e-4
    task1_steps: int = 400
    task1_lr: float = 3e-4
    batch_size: int = 32
    early_stop: float = 0.90
    dip_window: int = 200
    dense_every: int = 10
    sparse_every: int = 100
    stop_check_every: int = 10
    checkpoint_every: int = 10
    train_past_stop: bool = True

    def settings(self) -> list[TrainSettings]:
        """:class:`TrainSettings` of Task 0 and Task 1 (Task 1 marks its early-stop point and, unless
        ``train_past_stop`` is False, trains on)."""
        return [TrainSettings(steps=self.task0_steps, lr=self.task0_lr, batch_size=self.batch_size),
                TrainSettings(steps=self.task1_steps, lr=self.task1_lr, batch_size=self.batch_size,
                              early_stop_at=self.early_stop, stop_training=not self.train_past_stop)]

    def schedule(self) -> EvalSchedule:
        """Dense evaluation (and checkpoints) in the dip window, sparse after."""
        return EvalSchedule(dense_every=self.dense_every, dense_until=self.dip_window,
                            sparse_every=self.sparse_every, stop_check_every=self.stop_check_every,
                            checkpoint_every=self.checkpoint_every)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProbeInputs:
    """Records the probes of a Biography diagnosis read (all disjoint by person).

    Attributes:
        held_out: Task 0 QA on the test people (every score).
        recovery_pool: Task 0 QA on the training people (recovery examples come from here).
        validation: Task 0 QA on the validation people (choices such as the recovery lr).
        pretraining: the test people's facts in the pretraining (biography sentence) format.
        validation_pretraining: the same for the validation people.
        new_task: Task 1 QA.
    """

    held_out: list[QARecord]
    recovery_pool: list[QARecord]
    validation: list[QARecord]
    pretraining: list[QARecord]
    validation_pretraining: list[QARecord]
    new_task: list[QARecord]


def first_people(records: Sequence[Any], people: int) -> list[Any]:
    """The records of the first ``people`` people (by ``person_id``), in their order."""
    kept = set(sorted({r.person_id for r in records})[:people])
    return [r for r in records if r.person_id in kept]


def probe_inputs(data: BiographyData, *, people: Optional[int] = None) -> ProbeInputs:
    """The :class:`ProbeInputs` of a Biography scenario (DESIGN.md §5's splits).

    Args:
        people: keep the records of the first ``people`` people of each split (a quicker,
            noisier diagnosis); None keeps all.
    """
    def first(records: list[QARecord]) -> list[QARecord]:
        return records if people is None else first_people(records, people)

    return ProbeInputs(held_out=first(data.qa("task0_test")), recovery_pool=first(data.qa("task0_train")),
                       validation=first(data.qa("task0_val")), pretraining=first(data.probes("task0_test")),
                       validation_pretraining=first(data.probes("task0_val")), new_task=first(data.qa("task1")))



# The Biography issue's targets: (name, quantity, threshold). Quantities are computed from run
# summaries (:func:`spurious_diag.continual.tables.run_summary` columns) of SEQ and of Freeze(k).
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("Task 0 held-out exact match after Task 0", "task0_after", 0.70),
    ("SEQ: Task 0 drop within the dip window of Task 1", "seq_drop", 0.30),
    ("at the dip: Freeze(k) Task 0 minus SEQ Task 0", "dip_gain", 0.30),
    ("at early stop: Freeze(k) Task 0 minus SEQ Task 0", "stop_gain", 0.10),
    ("at early stop: Freeze(k) Task 1 minus SEQ Task 1", "stop_task1_gap", -0.10),
)


def check_targets(seq: Mapping[str, float], freeze: Mapping[str, float]) -> list[dict[str, Any]]:
    """The Biography targets for one SEQ and one Freeze(k) summary (a run's, or means over seeds).

    Args:
        seq, freeze: ``task0_test_after``, ``task0_test_dip``, ``task0_test_stop`` and
            ``task1_train_stop`` (exact match, fractions) of each method; missing keys give NaN.

    Returns:
        One dict per :data:`TARGETS` entry: ``target``, ``quantity``, ``value``, ``threshold``,
        ``pass`` (value ≥ threshold; False when NaN).
    """
    def get(row: Mapping[str, float], key: str) -> float:
        value = row.get(key)
        return float(value) if value is not None else math.nan

    values = {
        "task0_after": get(seq, "task0_test_after"),
        "seq_drop": get(seq, "task0_test_after") - get(seq, "task0_test_dip"),
        "dip_gain": get(freeze, "task0_test_dip") - get(seq, "task0_test_dip"),
        "stop_gain": get(freeze, "task0_test_stop") - get(seq, "task0_test_stop"),
        "stop_task1_gap": get(freeze, "task1_train_stop") - get(seq, "task1_train_stop"),
    }
    return [{"target": name, "quantity": key, "value": values[key], "threshold": threshold,
             "pass": bool(values[key] >= threshold)} for name, key, threshold in TARGETS]
