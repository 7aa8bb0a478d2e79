"""The sequential runner: train a model on tasks one after another with a continual-learning method.

For each task in turn the runner

1. prepares the method: REPLAY(f) adds ⌊B/2⌋ examples of a buffer of earlier tasks' records to
   every batch; MIX(f) mixes earlier tasks' examples into the training set; EWC(λ) adds the
   penalty of the running Fisher of the earlier tasks;
2. trains it with the training engine (:func:`spurious_diag.training.engine.train_task`; data
   order seeded by ``seed + i`` for task i), which for Freeze(k) freezes the embeddings and
   blocks 0..k−1 (every task after the first) and raises if a frozen tensor moved; the task's
   sets are evaluated on the :class:`~.tasks.EvalSchedule` and its early-stop point marked;
3. for EWC, computes the task's Fisher at its end and folds it into the running average, if a
   later task needs it.

For LAMOL, every task trains with its language-model term, and every task after the first gets
the pseudo-samples the model generates before it (:mod:`.lamol`). For GP, step 2 is preceded by the preliminary runs that give the direction D (every task after
the first; :mod:`.preliminary`), and every optimizer step of the task removes the gradients'
components along D (:mod:`.projection`).

A run may start after tasks already learned (``SequenceOptions.first_task``): the model is then
taken to be the end of ``tasks[first_task − 1]`` (e.g. one Task 0 model reused by many Task 1 runs).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from ..freeze import freeze_bottom_layers
from ..training.checkpoints import CheckpointPlan
from ..training.records import encode_records
from ..training.engine import train_task
from ..training.evaluate import EVAL_BATCH_SIZE
from ..training.settings import TrainSettings
from .evaluation import Evaluation, SequenceEvaluator, TaskProgressCallback
from .ewc import EwcPenalty, FisherDiagonal, batch_fisher, running_average
from .lamol import PSEUDO_SAMPLE_RATIO, LamolCollator, LamolLoss, generate_pseudo_samples, pseudo_sample_count
from .methods import Method
from .preliminary import PreliminaryRuns, preliminary_direction
from .projection import GradientProjector, ProjectionCallback
from .replay import ReplayCollator, replay_buffer, replay_mix
from .result import ATTRIBUTE_COLUMNS, CURVE_COLUMNS, POINT_COLUMNS, SequenceResult
from .resume import FinishedTask, RunState
from .tasks import EvalSchedule, Task

__all__ = ["SequenceOptions", "run_sequence"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class SequenceOptions:
    """How :func:`run_sequence` runs, evaluates, saves and resumes (the training itself is
    :class:`~spurious_diag.training.settings.TrainSettings`).

    Attributes:
        schedule: evaluation and checkpoint steps (:class:`~.tasks.EvalSchedule`).
        first_task, last_task: the tasks trained in this run (inclusive; default all). With
            ``first_task`` > 0 the model must be the one at the end of ``tasks[first_task − 1]``.
        checkpoint_dir: save weight-only ``checkpoint-N`` folders of each task under
            ``checkpoint_dir/<task name>/`` (a chain ``spurious-diag audit`` reads); None: none.
        state_dir: keep what a killed run needs to continue here (:mod:`.resume`): each finished
            task's weights and rows, and a full-state checkpoint of the task in progress every
            ``state_every`` steps (only the newest is kept). Must be empty unless ``resume``.
        resume: continue the run in ``state_dir`` (same model, tasks and arguments); the result
            equals an uninterrupted run's.
        fisher_max_examples: cap on the examples of each EWC Fisher computed here (None: all).
        projection: for GP, the window and count of the preliminary runs
            (:class:`~.preliminary.PreliminaryRuns`; the paper's steps 100..150 by default).
        pseudo_ratio: for LAMOL, pseudo-samples generated before a task per training record of
            it (the paper's 0.2; 0: none).
        eval_batch_size: sequences per evaluation forward pass.
        start_evaluation: a full evaluation of the given model on every set of ``tasks``
            (:func:`~.evaluation.start_evaluation` of the run that trained it), recorded as step 0 of
            ``first_task`` instead of scoring the same model again; None scores it.

    Raises:
        UsageError: inconsistent values.
    """

    schedule: EvalSchedule = EvalSchedule()
    first_task: int = 0
    last_task: Optional[int] = None
    checkpoint_dir: Optional[Union[str, "os.PathLike[str]"]] = None
    state_dir: Optional[Union[str, "os.PathLike[str]"]] = None
    state_every: int = 50
    resume: bool = False
    fisher_max_examples: Optional[int] = None
    projection: PreliminaryRuns = PreliminaryRuns()
    pseudo_ratio: float = PSEUDO_SAMPLE_RATIO
    eval_batch_size: int = EVAL_BATCH_SIZE
    start_evaluation: Optional[Evaluation] = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.first_task < 0 or (self.last_task is not None and self.last_task < self.first_task):
            raise UsageError(f"cannot run tasks {self.first_task}..{self.last_task}")
        if self.resume and self.state_dir is None:
            raise UsageError("resume needs the state_dir of the run to continue")
        if self.state_every < 1:
            raise UsageError(f"state_every must be >= 1, got {self.state_every}")
        if not 0 <= self.pseudo_ratio <= 1:
            raise UsageError(f"pseudo_ratio must be in [0, 1], got {self.pseudo_ratio}")
        if self.eval_batch_size < 1:
            raise UsageError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")


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
    if method.kind == "mix" and index > 0:
        old = [r for task in tasks[:index] for r in task.train]
        mixed = replay_mix(records, old, float(method.param), seed=seed)  # type: ignore[arg-type]
        logger.info("%s: %d training records + %d replayed from %d earlier", tasks[index].name, len(records),
                    len(mixed) - len(records), len(old))
        records = mixed
    return records


def _identity(method: Method, seed: int, tasks: Sequence[Task], settings: Sequence[TrainSettings],
              options: SequenceOptions) -> dict[str, Any]:
    identity = {"method": method.label, "seed": seed, "first_task": options.first_task,
                "state_every": options.state_every,
                "tasks": [{"name": t.name, "train": len(t.train), "evals": {k: len(v) for k, v in t.evals.items()},
                           "primary": t.primary} for t in tasks],
                "settings": [dataclasses.asdict(s) for s in settings], "schedule": dataclasses.asdict(options.schedule)}
    if method.kind == "gp":
        identity["projection"] = dataclasses.asdict(options.projection)
    if method.kind == "lamol":
        identity["pseudo_ratio"] = options.pseudo_ratio
    return identity


def run_sequence(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[Task],
    method: Method,
    settings: Union[TrainSettings, Sequence[TrainSettings]],
    *,
    seed: int,
    options: SequenceOptions = SequenceOptions(),
    fisher: Sequence[FisherDiagonal] = (),
) -> SequenceResult:
    """Train ``model`` in place on ``tasks[first_task..last_task]`` in order with ``method``.

    Args:
        model: the model to train (modified in place). With ``options.first_task`` > 0 it must be
            the model at the end of ``tasks[first_task − 1]``.
        tokenizer: its tokenizer.
        tasks: the whole sequence (all tasks' sets are evaluated, also those not trained here).
        method: :class:`~.methods.Method` (SEQ, Freeze(k), REPLAY(f), MIX(f), EWC(λ), GP, LAMOL(λ)).
        settings: one :class:`~spurious_diag.training.settings.TrainSettings` for every task, or
            one per task of ``tasks``. Its ``early_stop_at`` marks a task's early-stop point on its
            primary set; with ``stop_training`` the task ends there.
        seed: task i's data order (and replay draw) use seed ``seed + i``.
        options: :class:`SequenceOptions` (schedule, tasks to run, checkpoints, resume).
        fisher: for EWC, the running Fisher of the tasks before ``first_task`` (its last element
            is used; e.g. computed once and shared by several runs). Without it, a run from
            ``first_task`` = 1 computes Task 0's at the start from the model (the end of Task 0);
            later starts need it given.

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
    first_task = options.first_task
    last_task = len(tasks) - 1 if options.last_task is None else options.last_task
    if not 0 <= first_task <= last_task < len(tasks):
        raise UsageError(f"cannot run tasks {first_task}..{last_task} of {len(tasks)}")
    per_task = _settings_for(settings, len(tasks))
    state = None if options.state_dir is None else RunState(
        options.state_dir, _identity(method, seed, tasks, per_task, options),
        resume=options.resume)
    evaluator = SequenceEvaluator(tokenizer, tasks, options.eval_batch_size)
    result = SequenceResult(method.label, seed, [t.name for t in tasks], first_task, pd.DataFrame(), pd.DataFrame(),
                            pd.DataFrame(), pd.DataFrame())
    ewc = method.kind == "ewc" and float(method.param) > 0  # type: ignore[arg-type]  # EWC(0) is SEQ
    running: Optional[FisherDiagonal] = list(fisher)[-1] if fisher else None
    if ewc and first_task > 0 and running is None:
        if first_task > 1:
            raise UsageError(f"EWC from task {first_task} needs the running Fisher of tasks 0..{first_task - 1}")
        running = batch_fisher(model, tokenizer, tasks[0].train, batch_size=per_task[0].batch_size,
                               source=tasks[0].name, max_examples=options.fisher_max_examples, seed=seed)
    if ewc and running is not None:
        result.fisher_sums[first_task - 1] = running.total()
    freeze_layers = method.frozen_blocks
    curve, attributes, points, losses = [], [], [], []
    step_offset = 0
    for index in range(first_task, last_task + 1):
        task, task_settings = tasks[index], per_task[index]
        started = time.perf_counter()
        frozen_here = freeze_layers if index > 0 else None  # Freeze(k) protects what earlier tasks taught
        finished = state.finished(index) if state is not None else None
        if finished is not None:  # done before a kill: its rows and weights, not its training again
            if frozen_here is not None:
                result.freeze_reports[index] = freeze_bottom_layers(model, frozen_here, embeddings=True)
            state.load_weights(index, model)  # type: ignore[union-attr]
            curve.extend(finished.curve)
            attributes.extend(finished.attributes)
            points.extend(finished.points)
            if finished.losses:
                losses.append(pd.DataFrame(finished.losses))
            if finished.frozen_check is not None:
                result.frozen_checks[index] = finished.frozen_check
            if finished.fisher is not None:
                running = finished.fisher
                result.fisher_sums[index] = running.total()
            step_offset += finished.steps
            result.runtime_s[index] = finished.runtime_s
            logger.info("%s %s: finished before the resume, not trained again", method.label, task.name)
            continue
        penalty = EwcPenalty([running], float(method.param)) if ewc and running is not None else None  # type: ignore[arg-type]
        callback = TaskProgressCallback(
            evaluator, index, task_settings.steps, options.schedule, early_stop=task_settings.early_stop_at,
            stop_training=task_settings.stop_training,
            checkpoint_dir=None if options.checkpoint_dir is None else Path(options.checkpoint_dir) / task.name,
            step_offset=step_offset)
        resume_from = state.checkpoint(index) if state is not None else None
        if resume_from is None:
            # (on resume its rows come back with the checkpoint)
            callback.begin(model, options.start_evaluation if index == first_task else None)
        steps_done = 0
        task_losses = pd.DataFrame()
        if task_settings.stop_training and callback.stop_step == 0:
            # At its early-stop point before the first step: nothing to train.
            if frozen_here is not None:
                result.freeze_reports[index] = freeze_bottom_layers(model, frozen_here, embeddings=True)
        else:
            records = _training_records(tasks, index, method, seed + index)
            callbacks: list[Any] = [callback]
            collator, extra_loss = None, penalty
            if method.kind == "lamol":
                if index > 0:
                    pseudo, _ = generate_pseudo_samples(
                        model, tokenizer, pseudo_sample_count(len(records), options.pseudo_ratio), seed=seed + index)
                    records = [*records, *pseudo]
                if float(method.param) > 0:  # type: ignore[arg-type]
                    collator = LamolCollator(tokenizer.eos_token_id, tokenizer.pad_token_id)
                    extra_loss = LamolLoss(float(method.param))  # type: ignore[arg-type]
            if method.kind == "replay" and index > 0 and float(method.param) > 0:  # type: ignore[arg-type]
                buffer = replay_buffer([t.train for t in tasks[:index]], float(method.param),  # type: ignore[arg-type]
                                       seed=seed + index)
                collator = ReplayCollator(encode_records(tokenizer, buffer), tokenizer.pad_token_id, seed + index)
                logger.info("%s: replay buffer of %d records from %d earlier tasks", task.name, len(buffer), index)
            if method.kind == "gp" and index > 0:
                direction = preliminary_direction(model, tokenizer, records, task_settings, options.projection,
                                                  seed=seed + index)
                callbacks.append(ProjectionCallback(GradientProjector(direction, rule=options.projection.rule)))
            run = train_task(model, tokenizer, records, task_settings, seed=seed + index, freeze_layers=frozen_here,
                             callbacks=callbacks, extra_loss=extra_loss, collator=collator, resume_from=resume_from,
                             checkpoints=(CheckpointPlan(os.fspath(state.train_dir(index)), options.state_every, keep=1)
                                          if state is not None else None),
                             label=task.name)
            if run.freeze is not None:
                result.freeze_reports[index] = run.freeze
            if run.frozen_check is not None:
                result.frozen_checks[index] = run.frozen_check
            steps_done = run.training.steps
            task_losses = run.training.losses.assign(task_index=index, task=task.name)
            losses.append(task_losses)
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
        if ewc and index < len(tasks) - 1 and index < last_task:
            new = batch_fisher(model, tokenizer, task.train, batch_size=task_settings.batch_size, source=task.name,
                               max_examples=options.fisher_max_examples, seed=seed)
            running = term = running_average(new, running, index)
            result.fisher_sums[index] = running.total()
        result.runtime_s[index] = time.perf_counter() - started
        if state is not None:
            state.save_finished(index, model, FinishedTask(
                steps_done, task_curve, task_attributes, task_points, task_losses.to_dict("records"),
                result.frozen_checks.get(index), result.runtime_s[index], term))
        logger.info("%s %s done: %d steps in %.1f s%s", method.label, task.name, steps_done, result.runtime_s[index],
                    f", early-stop point at step {callback.stop_step}" if reached else "")
    result.curve = pd.DataFrame(curve, columns=CURVE_COLUMNS)
    result.per_attribute = pd.DataFrame(attributes, columns=ATTRIBUTE_COLUMNS)
    result.points = pd.DataFrame(points, columns=POINT_COLUMNS)
    result.losses = (pd.concat(losses, ignore_index=True)[["task_index", "task", "step", "loss", "learning_rate"]]
                     if losses else pd.DataFrame(columns=["task_index", "task", "step", "loss", "learning_rate"]))
    return result
