"""The sequential runner: train a model on tasks one after another with a continual-learning method.

For each task in turn the runner

1. prepares the method: Freeze(k) freezes the embeddings and blocks 0..k−1 for every task after
   the first; REPLAY(f) mixes earlier tasks' examples into the training set; EWC(λ) adds the
   penalty of the Fisher terms of the earlier tasks;
2. trains with :func:`spurious_diag.training.train_model` (data order seeded by ``seed + i``
   for task i), evaluating every task's sets on the :class:`~.tasks.EvalSchedule` and
   marking the early-stop point;
3. for Freeze(k), checks that every frozen tensor is bit-identical to its value before the
   task (:func:`spurious_diag.freeze.verify_frozen`) and raises if one moved;
4. for EWC, computes the task's diagonal Fisher at its end, if a later task needs it.

A run may start after tasks already learned (``first_task``): the model is then taken to be
the end of ``tasks[first_task − 1]`` (e.g. one Task 0 model reused by many Task 1 runs).

With a ``state_dir`` a run can be killed and continued (``resume=True``): finished tasks are
not trained again, and the task in progress continues from its last full-state checkpoint
with the evaluation rows recorded so far (:mod:`.resume`).

Results are tidy DataFrames in a :class:`SequenceResult`; :mod:`.tables` derives the accuracy
matrix, backward transfer and a one-row summary from them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from ..freeze import FreezeReport, FrozenCheck, freeze_bottom_layers, verify_frozen
from ..freeze.verify import FrozenWeightsChangedError
from ..training.trainer import train_model
from .evaluation import SequenceEvaluator, TaskProgressCallback
from .ewc import EwcPenalty, FisherDiagonal, diagonal_fisher
from .methods import Method
from .replay import replay_mix
from .resume import FinishedTask, RunState
from .tasks import EvalSchedule, Task, TrainSettings

__all__ = ["CURVE_COLUMNS", "ATTRIBUTE_COLUMNS", "POINT_COLUMNS", "SequenceResult", "run_sequence"]

logger = logging.getLogger(__name__)

CURVE_COLUMNS = ["method", "seed", "task_index", "task", "step", "global_step", "full",
                 "eval_task", "eval_set", "primary", "exact_match", "first_token_acc"]
ATTRIBUTE_COLUMNS = ["method", "seed", "task_index", "task", "step", "global_step", "eval_task", "eval_set",
                     "attribute", "n", "exact_match", "first_token_acc", "first_token_prob"]
POINT_COLUMNS = ["method", "seed", "task_index", "task", "point", "step", "global_step", "reached"]


@dataclass
class SequenceResult:
    """Everything a :func:`run_sequence` call measured.

    Attributes:
        method: the method's label; seed: the run's seed.
        task_names: names of all tasks of the sequence, in order; first_task: the first one
            trained in this run.
        curve: one row per evaluation × set (:data:`CURVE_COLUMNS`). ``step`` counts within
            the task being trained (``task``, ``task_index``); ``full`` is False for rows of
            an early-stop check (the trained task's primary set alone); ``primary`` marks a
            task's primary set.
        per_attribute: per-attribute scores of full evaluations (:data:`ATTRIBUTE_COLUMNS`).
        points: per trained task, the steps of its ``start``, ``early_stop`` and ``end`` points
            (:data:`POINT_COLUMNS`); ``reached`` is False when the early-stop criterion was
            never met (the point is then the end) or the task had none.
        losses: training loss per logging window (``task_index``, ``task``, ``step``, ``loss``,
            ``learning_rate``). After a resume, the window that spans the kill averages only the
            steps trained after it (the other tables are those of an uninterrupted run).
        freeze_reports / frozen_checks: per task index, what Freeze(k) froze and the
            bit-identity check after the task.
        fisher_sums: per task index, Σ F of its EWC Fisher.
        runtime_s: wall-clock seconds per task index (training and evaluation; for a task
            continued after a kill, the part after it).
    """

    method: str
    seed: int
    task_names: list[str]
    first_task: int
    curve: pd.DataFrame = field(repr=False)
    per_attribute: pd.DataFrame = field(repr=False)
    points: pd.DataFrame = field(repr=False)
    losses: pd.DataFrame = field(repr=False)
    freeze_reports: dict[int, FreezeReport] = field(default_factory=dict, repr=False)
    frozen_checks: dict[int, FrozenCheck] = field(default_factory=dict, repr=False)
    fisher_sums: dict[int, float] = field(default_factory=dict)
    runtime_s: dict[int, float] = field(default_factory=dict)


def _settings_for(settings: Union[TrainSettings, Sequence[TrainSettings]], n_tasks: int) -> list[TrainSettings]:
    if isinstance(settings, TrainSettings):
        return [settings] * n_tasks
    settings = list(settings)
    if len(settings) != n_tasks:
        raise UsageError(f"{len(settings)} training settings for {n_tasks} tasks")
    return settings


def _check_tasks(tasks: Sequence[Task]) -> None:
    names = [t.name for t in tasks]
    if not tasks:
        raise UsageError("no tasks")
    if len(set(names)) != len(names):
        raise UsageError(f"task names must be unique: {names}")


def _training_records(tasks: Sequence[Task], index: int, method: Method, seed: int) -> list[Any]:
    records = list(tasks[index].train)
    if method.kind == "replay" and index > 0:
        old = [r for task in tasks[:index] for r in task.train]
        mixed = replay_mix(records, old, float(method.param), seed=seed)  # type: ignore[arg-type]
        logger.info("%s: %d training records + %d replayed from %d earlier", tasks[index].name, len(records),
                    len(mixed) - len(records), len(old))
        records = mixed
    return records


def _identity(method: Method, seed: int, tasks: Sequence[Task], settings: Sequence[TrainSettings],
              schedule: EvalSchedule, first_task: int, state_every: int) -> dict[str, Any]:
    return {"method": method.label, "seed": seed, "first_task": first_task, "state_every": state_every,
            "tasks": [{"name": t.name, "train": len(t.train), "evals": {k: len(v) for k, v in t.evals.items()},
                       "primary": t.primary} for t in tasks],
            "settings": [dataclasses.asdict(s) for s in settings], "schedule": dataclasses.asdict(schedule)}


def run_sequence(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[Task],
    method: Method,
    settings: Union[TrainSettings, Sequence[TrainSettings]],
    *,
    seed: int,
    schedule: EvalSchedule = EvalSchedule(),
    first_task: int = 0,
    last_task: Optional[int] = None,
    fisher: Sequence[FisherDiagonal] = (),
    fisher_max_examples: Optional[int] = None,
    checkpoint_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    eval_batch_size: int = 128,
    state_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    state_every: int = 50,
    resume: bool = False,
) -> SequenceResult:
    """Train ``model`` in place on ``tasks[first_task..last_task]`` in order with ``method``.

    Args:
        model: the model to train (modified in place). With ``first_task`` > 0 it must be the
            model at the end of ``tasks[first_task − 1]``.
        tokenizer: its tokenizer.
        tasks: the whole sequence (all tasks' sets are evaluated, also those not trained here).
        method: :class:`~.methods.Method` (SEQ, Freeze(k), REPLAY(f), EWC(λ)).
        settings: one :class:`~.tasks.TrainSettings` for every task, or one per task of ``tasks``.
        seed: task i's data order (and replay draw) use seed ``seed + i``.
        schedule: evaluation and checkpoint steps.
        first_task, last_task: the tasks trained in this run (inclusive; default all).
        fisher: for EWC, Fisher terms of tasks before ``first_task`` (e.g. computed once and
            shared by several runs). Missing ones are computed at the start from the model
            (which is the end of the previous task) on ``tasks[first_task − 1].train``; earlier
            tasks than that need an explicit term.
        fisher_max_examples: cap on the examples of each computed Fisher (None: all).
        checkpoint_dir: save weight-only ``checkpoint-N`` folders of each task under
            ``checkpoint_dir/<task name>/`` (a chain ``spurious-diag audit`` reads);
            None: save nothing.
        eval_batch_size: sequences per evaluation forward pass.
        state_dir: keep what a killed run needs to continue here (:mod:`.resume`): each
            finished task's weights and rows, and a full-state checkpoint of the task in
            progress every ``state_every`` steps. Must be empty unless ``resume``. None: keep none.
        state_every: steps between full-state checkpoints (only the newest is kept).
        resume: continue the run in ``state_dir``: pass the same ``model`` (the start of the
            run), tasks and arguments; the result equals an uninterrupted run's.

    Returns:
        :class:`SequenceResult`. The model is left at the end of ``tasks[last_task]`` (not at
        an early-stop point, unless its settings have ``stop_training``).

    Raises:
        FrozenWeightsChangedError: a tensor frozen by Freeze(k) changed during a task.
        UsageError: inconsistent arguments, or ``resume`` with other ones than the run's.
        OutputDirError / CheckpointNotFoundError: a non-empty ``state_dir`` without ``resume``,
            or ``resume`` without a run in ``state_dir``.
    """
    _check_tasks(tasks)
    last_task = len(tasks) - 1 if last_task is None else last_task
    if not 0 <= first_task <= last_task < len(tasks):
        raise UsageError(f"cannot run tasks {first_task}..{last_task} of {len(tasks)}")
    per_task = _settings_for(settings, len(tasks))
    if resume and state_dir is None:
        raise UsageError("resume needs the state_dir of the run to continue")
    if state_every < 1:
        raise UsageError(f"state_every must be >= 1, got {state_every}")
    state = None if state_dir is None else RunState(
        state_dir, _identity(method, seed, tasks, per_task, schedule, first_task, state_every), resume=resume)
    evaluator = SequenceEvaluator(tokenizer, tasks, eval_batch_size)
    result = SequenceResult(method.label, seed, [t.name for t in tasks], first_task, pd.DataFrame(), pd.DataFrame(),
                            pd.DataFrame(), pd.DataFrame())
    fisher_terms = list(fisher)
    if method.kind == "ewc" and first_task > 0 and len(fisher_terms) < first_task:
        if len(fisher_terms) < first_task - 1:
            raise UsageError(f"EWC from task {first_task} needs Fisher terms of tasks 0..{first_task - 2}")
        fisher_terms.append(diagonal_fisher(model, tokenizer, tasks[first_task - 1].train,
                                            source=tasks[first_task - 1].name, max_examples=fisher_max_examples,
                                            seed=seed))
    curve, attributes, points, losses = [], [], [], []
    step_offset = 0
    for index in range(first_task, last_task + 1):
        task, task_settings = tasks[index], per_task[index]
        started = time.perf_counter()
        finished = state.finished(index) if state is not None else None
        frozen_before: dict[str, Any] = {}
        if method.kind == "freeze" and index > 0:
            report = freeze_bottom_layers(model, int(method.frozen_blocks or 0), embeddings=True)
            result.freeze_reports[index] = report
            if finished is None:
                params = dict(model.named_parameters())
                frozen_before = {name: params[name].detach().clone() for name in report.frozen}
        if finished is not None:  # done before a kill: its rows and weights, not its training again
            state.load_weights(index, model)  # type: ignore[union-attr]
            curve.extend(finished.curve)
            attributes.extend(finished.attributes)
            points.extend(finished.points)
            if finished.losses:
                losses.append(pd.DataFrame(finished.losses))
            if finished.frozen_check is not None:
                result.frozen_checks[index] = finished.frozen_check
            if finished.fisher is not None:
                fisher_terms.append(finished.fisher)
            step_offset += finished.steps
            result.runtime_s[index] = finished.runtime_s
            logger.info("%s %s: finished before the resume, not trained again", method.label, task.name)
            continue
        penalty = EwcPenalty(fisher_terms, float(method.param)) if method.kind == "ewc" and fisher_terms else None
        callback = TaskProgressCallback(
            evaluator, index, task_settings.steps, schedule, early_stop=task_settings.early_stop,
            stop_training=task_settings.stop_training,
            checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir) / task.name,
            step_offset=step_offset)
        resume_from = state.checkpoint(index) if state is not None else None
        if resume_from is None:
            callback.begin(model)  # on resume its rows come back with the checkpoint
        steps_done = 0
        task_losses = pd.DataFrame()
        if not (task_settings.stop_training and callback.stop_step == 0):
            records = _training_records(tasks, index, method, seed + index)
            training = train_model(model, tokenizer, records, steps=task_settings.steps, lr=task_settings.lr,
                                   batch_size=task_settings.batch_size, seed=seed + index,
                                   schedule=task_settings.schedule, warmup_steps=task_settings.warmup_steps,
                                   weight_decay=task_settings.weight_decay, callbacks=[callback], extra_loss=penalty,
                                   output_dir=state.train_dir(index) if state is not None else None,
                                   save_steps=state_every if state is not None else None, keep_checkpoints=1,
                                   resume_from=resume_from)
            steps_done = training.steps
            task_losses = training.losses.assign(task_index=index, task=task.name)
            losses.append(task_losses)
        if frozen_before:
            check = verify_frozen(frozen_before, model, list(frozen_before))
            result.frozen_checks[index] = check
            logger.info("%s: %s", task.name, check.summary())
            if not check.ok:
                raise FrozenWeightsChangedError(f"{len(check.changed)} frozen tensors changed during {task.name}",
                                                None, check.changed[0])
        reached = callback.stop_step is not None
        stamp = {"method": method.label, "seed": seed, "task_index": index, "task": task.name}
        task_points = [{**stamp, "point": point, "step": step, "global_step": step_offset + step, "reached": hit}
                       for point, step, hit in (("start", 0, True),
                                                ("early_stop", callback.stop_step if reached else steps_done, reached),
                                                ("end", steps_done, True))]
        task_curve = [{"method": method.label, "seed": seed, **row} for row in callback.rows]
        task_attributes = [{"method": method.label, "seed": seed, **row} for row in callback.attribute_rows]
        points.extend(task_points)
        curve.extend(task_curve)
        attributes.extend(task_attributes)
        step_offset += steps_done
        term = None
        if method.kind == "ewc" and index < len(tasks) - 1 and index < last_task:
            term = diagonal_fisher(model, tokenizer, task.train, source=task.name,
                                   max_examples=fisher_max_examples, seed=seed)
            fisher_terms.append(term)
        result.runtime_s[index] = time.perf_counter() - started
        if state is not None:
            state.save_finished(index, model, FinishedTask(
                steps_done, task_curve, task_attributes, task_points, task_losses.to_dict("records"),
                result.frozen_checks.get(index), result.runtime_s[index], term))
        logger.info("%s %s done: %d steps in %.1f s%s", method.label, task.name, steps_done, result.runtime_s[index],
                    f", early-stop point at step {callback.stop_step}" if reached else "")
    for i, term in enumerate(fisher_terms):
        result.fisher_sums[i] = term.total()
    result.curve = pd.DataFrame(curve, columns=CURVE_COLUMNS)
    result.per_attribute = pd.DataFrame(attributes, columns=ATTRIBUTE_COLUMNS)
    result.points = pd.DataFrame(points, columns=POINT_COLUMNS)
    result.losses = (pd.concat(losses, ignore_index=True)[["task_index", "task", "step", "loss", "learning_rate"]]
                     if losses else pd.DataFrame(columns=["task_index", "task", "step", "loss", "learning_rate"]))
    return result
