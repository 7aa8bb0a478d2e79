"""Scoring every evaluation set of a sequence, and the Trainer callback that schedules it.

The callback (:class:`TaskProgressCallback`) runs during one task's training: full
evaluations on the :class:`~.tasks.EvalSchedule`, the early-stop check in between, the
early-stop decision, and weight-only checkpoints. It appends tidy rows; the runner turns them
into DataFrames. Its rows and early-stop point travel with the runner's full-state checkpoints,
so a resumed task continues them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from ..outputs import staged_dir
from ..training.checkpoints import ResumableCallback
from ..training.evaluate import EVAL_BATCH_SIZE, eval_mode, evaluate_records
from ..training.records import encode_qa
from .result import CURVE_COLUMNS
from .tasks import EvalSchedule, Task

__all__ = ["Evaluation", "SequenceEvaluator", "TaskProgressCallback", "evaluation_sets", "save_weights",
           "start_evaluation"]

logger = logging.getLogger(__name__)


# One full evaluation, as :meth:`SequenceEvaluator.full` returns it: curve rows and per-attribute rows.
Evaluation = tuple[list[dict[str, Any]], list[dict[str, Any]]]

# The fields of a curve row that a full evaluation fills (the rest are the step's stamp).
_SCORE_FIELDS = ("eval_task", "eval_set", "primary", "exact_match", "first_token_acc")


def evaluation_sets(tasks: Sequence[Task]) -> list[tuple[str, str]]:
    """``(task name, eval set)`` of every set of ``tasks``, in the order a full evaluation scores them."""
    return [(task.name, eval_set) for task in tasks for eval_set in task.evals]


def _prompt_completion(record: Any) -> tuple[str, str]:
    if isinstance(record, Mapping):
        return str(record["prompt"]), str(record["completion"])
    return record.prompt, record.completion


@dataclass
class SequenceEvaluator:
    """Scores a model on the evaluation sets of every task of a sequence.

    Attributes:
        tokenizer: the model's tokenizer.
        tasks: the sequence; every set of every task is scored at a full evaluation.
        batch_size: sequences per forward pass.
    """

    tokenizer: PreTrainedTokenizerBase
    tasks: Sequence[Task]
    batch_size: int = EVAL_BATCH_SIZE
    _by_length: dict[tuple[str, str], list[Any]] = field(default_factory=dict, init=False, repr=False)

    def _records(self, task: Task, eval_set: str) -> list[Any]:
        # Sorted by token length, so batches need little padding (~20% faster); the scores are
        # means per attribute and do not depend on the order.
        key = (task.name, eval_set)
        if key not in self._by_length:
            records = list(task.evals[eval_set])
            lengths = [len(encode_qa(self.tokenizer, *_prompt_completion(r)).input_ids) for r in records]
            self._by_length[key] = [records[i] for i in sorted(range(len(records)), key=lengths.__getitem__)]
        return self._by_length[key]

    def score(self, model: PreTrainedModel, task: Task, eval_set: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One set: a curve row (without step fields) and its per-attribute rows."""
        result = evaluate_records(model, self.tokenizer, self._records(task, eval_set), batch_size=self.batch_size)
        row = {"eval_task": task.name, "eval_set": eval_set, "primary": eval_set == task.primary,
               "exact_match": result.exact_match, "first_token_acc": result.first_token_acc}
        attributes = [{"eval_task": task.name, "eval_set": eval_set, **record}
                      for record in result.per_attribute.to_dict("records")]
        return row, attributes

    def sets(self) -> list[tuple[str, str]]:
        """``(task name, eval set)`` of every set a full evaluation scores, in its order."""
        return evaluation_sets(self.tasks)

    def full(self, model: PreTrainedModel) -> Evaluation:
        """Every set of every task: curve rows and per-attribute rows."""
        rows, attributes = [], []
        for task in self.tasks:
            for eval_set in task.evals:
                row, attrs = self.score(model, task, eval_set)
                rows.append(row)
                attributes.extend(attrs)
        return rows, attributes


def save_weights(model: PreTrainedModel, path: os.PathLike | str) -> Path:
    """Save weights and config only (safetensors, no optimizer state), atomically, to ``path``."""
    with staged_dir(os.fspath(path), overwrite=True) as staging:
        model.save_pretrained(staging, safe_serialization=True)
    return Path(path)


class TaskProgressCallback(ResumableCallback):
    """Evaluates, checks early stopping and saves checkpoints while one task trains.

    Args:
        evaluator: scores the sets.
        task_index: position of the task being trained in ``evaluator.tasks``.
        total_steps: the task's planned steps.
        schedule: when to evaluate, check and save.
        early_stop: exact match of the task's primary set that marks the early-stop point
            (None: no early stopping).
        stop_training: end training at the early-stop point.
        checkpoint_dir: where ``checkpoint-N`` folders go (None: no checkpoints).
        step_offset: optimizer steps of the sequence before this task (for ``global_step``).

    Attributes:
        rows: curve rows (``task_index``, ``task``, ``step``, ``global_step``, ``full``, then the
            :meth:`SequenceEvaluator.score` fields); ``full`` is False for an early-stop check
            that scored the primary set alone.
        attribute_rows: per-attribute rows of full evaluations.
        stop_step: the early-stop point's step, once reached.
    """

    def __init__(self, evaluator: SequenceEvaluator, task_index: int, total_steps: int, schedule: EvalSchedule, *,
                 early_stop: Optional[float] = None, stop_training: bool = False,
                 checkpoint_dir: Optional[os.PathLike | str] = None, step_offset: int = 0):
        self.evaluator = evaluator
        self.task_index = task_index
        self.task = evaluator.tasks[task_index]
        self.early_stop = early_stop
        self.stop_training = stop_training
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.step_offset = step_offset
        self.full_steps = set(schedule.full_steps(total_steps))
        self.check_steps = set(schedule.stop_check_steps(total_steps)) if early_stop is not None else set()
        self.save_steps = set(schedule.checkpoint_steps(total_steps)) if checkpoint_dir is not None else set()
        self.rows: list[dict[str, Any]] = []
        self.attribute_rows: list[dict[str, Any]] = []
        self.stop_step: Optional[int] = None
        self.saved: list[Path] = []

    def _stamp(self, step: int, full: bool) -> dict[str, Any]:
        return {"task_index": self.task_index, "task": self.task.name, "step": step,
                "global_step": self.step_offset + step, "full": full}

    def _full(self, model: PreTrainedModel, step: int, given: Optional[Evaluation] = None) -> float:
        rows, attributes = self.evaluator.full(model) if given is None else given
        stamp = self._stamp(step, True)
        self.rows.extend({**stamp, **row} for row in rows)
        self.attribute_rows.extend({**stamp, **row} for row in attributes)
        logger.info("%s step %d: %s", self.task.name, step,
                    ", ".join(f"{r['eval_task']}/{r['eval_set']}={r['exact_match']:.3f}" for r in rows))
        return next(r["exact_match"] for r in rows
                    if r["eval_task"] == self.task.name and r["eval_set"] == self.task.primary)

    def _check(self, model: PreTrainedModel, step: int) -> float:
        row, _ = self.evaluator.score(model, self.task, self.task.primary)
        self.rows.append({**self._stamp(step, False), **row})
        return row["exact_match"]

    def _at(self, model: PreTrainedModel, step: int, control: Any = None, given: Optional[Evaluation] = None) -> None:
        with eval_mode(model), torch.no_grad():
            primary: Optional[float] = None
            if step in self.full_steps:
                primary = self._full(model, step, given)
            elif self.stop_step is None and step in self.check_steps:
                primary = self._check(model, step)
            if (self.early_stop is not None and self.stop_step is None and primary is not None
                    and primary >= self.early_stop):
                self.stop_step = step
                if step not in self.full_steps:
                    self.rows.pop()  # the check row; the full evaluation scores the same set again
                    self._full(model, step)
                logger.info("%s: early-stop point at step %d (%s/%s = %.3f >= %.2f)", self.task.name, step,
                            self.task.name, self.task.primary, primary, self.early_stop)
                if self.stop_training and control is not None:
                    control.should_training_stop = True
        if step in self.save_steps or (self.stop_step == step and self.save_steps):  # the early-stop point too
            self.saved.append(save_weights(model, self.checkpoint_dir / f"checkpoint-{step}"))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "attribute_rows": self.attribute_rows, "stop_step": self.stop_step,
                "saved": [os.fspath(p) for p in self.saved]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self.attribute_rows = [dict(r) for r in state["attribute_rows"]]
        self.stop_step = state["stop_step"]
        self.saved = [Path(p) for p in state["saved"]]

    def begin(self, model: PreTrainedModel, evaluation: Optional[Evaluation] = None) -> None:
        """Step 0 (before the first optimizer step): evaluate, check and save. Call it before
        training; the early-stop point may already be reached here.

        Args:
            evaluation: a full evaluation of this very model (e.g. the last one of the task before,
                kept by whoever trained it: :func:`start_evaluation`), recorded as step 0's instead
                of scoring every set again. It must score the sets :meth:`SequenceEvaluator.sets` names.

        Raises:
            UsageError: ``evaluation`` scores other sets than this evaluator's.
        """
        if evaluation is not None:
            scored = [(row["eval_task"], row["eval_set"]) for row in evaluation[0]]
            if sorted(scored) != sorted(self.evaluator.sets()):
                raise UsageError(f"the given step-0 evaluation scores {scored}, the sequence's sets are "
                                 f"{self.evaluator.sets()}")
        self._at(model, 0, given=evaluation)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Optional[PreTrainedModel] = None,
                    **kwargs: Any) -> None:
        if model is not None:
            self._at(model, int(state.global_step), control)


def start_evaluation(curve: Any, attributes: Any, sets: Sequence[tuple[str, str]], *, task_index: int,
                     step: int) -> Optional[Evaluation]:
    """The full evaluation at the end of a finished task, restricted to ``sets``, as the
    :class:`Evaluation` that :meth:`TaskProgressCallback.begin` reuses for the next task's step 0.

    Args:
        curve: the run's curve rows (:data:`~.result.CURVE_COLUMNS`; a DataFrame).
        attributes: its per-attribute rows (:data:`~.result.ATTRIBUTE_COLUMNS`; a DataFrame).
        sets: ``(eval_task, eval_set)`` pairs the next run scores (:meth:`SequenceEvaluator.sets`).
        task_index, step: the finished task and its last step (the model the next run starts from:
            its ``end`` point).

    Returns:
        The score fields of that evaluation's rows, or None when the run has no full evaluation
        there or it lacks one of ``sets``.
    """
    def at_end(frame: Any) -> Any:
        return frame[(frame["task_index"] == task_index) & (frame["step"] == step)]

    wanted = {tuple(pair) for pair in sets}
    rows = [{k: row[k] for k in _SCORE_FIELDS} for row in at_end(curve[curve["full"].astype(bool)]).to_dict("records")
            if (row["eval_task"], row["eval_set"]) in wanted]
    if sorted((r["eval_task"], r["eval_set"]) for r in rows) != sorted(wanted):
        return None
    for row in rows:
        row.update(primary=bool(row["primary"]), exact_match=float(row["exact_match"]),
                   first_token_acc=float(row["first_token_acc"]))
    stamp = set(CURVE_COLUMNS) - set(_SCORE_FIELDS)  # method, seed, task, step ...: the next run's own
    attribute_rows = [{k: v for k, v in row.items() if k not in stamp} for row in at_end(attributes).to_dict("records")
                      if (row["eval_task"], row["eval_set"]) in wanted]
    return rows, attribute_rows
