"""The units of work of a comparison, each a top-level function a worker process can run.

Each takes the folder it owns (:class:`~.store.ComparisonStore`), writes its files there and
returns the record that :meth:`~.store.ComparisonStore.finish` stores in ``done.json``. Models are
read from the folders of the units they depend on; nothing is passed between processes but paths
and small records.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pandas as pd

from ..biography.recipe import BiographyRecipe
from .config import CompareConfig
from .spec import Candidate

if TYPE_CHECKING:
    from ..continual.evaluation import Evaluation
    from ..continual.tasks import Task

__all__ = ["recipe_of", "tasks_for_seed", "task0_job", "fisher_job", "run_job", "task_vector_job", "MODEL_DIR", "CHECKPOINTS"]

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
CHECKPOINTS = "checkpoints"
ATTRIBUTES = "attributes.csv"


def tasks_for_seed(config: CompareConfig, tasks: Sequence[Task], seed: int) -> list[Task]:
    """The tasks a run on ``seed`` scores: all of them on the selection seed; on the other seeds
    without Task 0's validation set, which only the selection seed's choices read (a sixth of
    every evaluation saved)."""
    if seed == config.selection_seed or "val" not in tasks[0].evals:
        return list(tasks)
    evals = {name: records for name, records in tasks[0].evals.items() if name != "val"}
    return [dataclasses.replace(tasks[0], evals=evals), *tasks[1:]]


def _start_evaluation(task0_unit: Path, tasks: Sequence[Task]) -> Optional[Evaluation]:
    """The Task 0 unit's last full evaluation (of the model every run starts from) on ``tasks``'
    sets, or None when the unit did not keep one (made before it was kept: scored again)."""
    from ..continual.evaluation import evaluation_sets, start_evaluation

    if not all((task0_unit / name).is_file() for name in (ATTRIBUTES, "points.csv")):
        return None
    points = pd.read_csv(task0_unit / "points.csv")
    end = points[(points["task_index"] == 0) & (points["point"] == "end")]
    return start_evaluation(pd.read_csv(task0_unit / "curve.csv"), pd.read_csv(task0_unit / ATTRIBUTES),
                            evaluation_sets(tasks), task_index=0, step=int(end["step"].iloc[0]))


def recipe_of(config: CompareConfig) -> BiographyRecipe:
    """The recipe the comparison trains with (the configured one, with its ``dense_every`` if given)."""
    if config.dense_every is None:
        return config.recipe
    return dataclasses.replace(config.recipe, dense_every=config.dense_every)


def _base_and_tasks(config: CompareConfig):
    from ..biography.pretrain import load_base_model
    from ..biography.tasks import biography_tasks

    base = load_base_model(config.base_dir)
    return base, biography_tasks(base.scenario(), new_tasks=config.tasks)


def _load_model(directory: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(os.fspath(directory), local_files_only=True).eval()


def task0_job(config: CompareConfig, unit: Path, lamol: Optional[float] = None) -> dict[str, Any]:
    """Task 0 from the base model (as SEQ, or with LAMOL(λ)'s language-model term): the model in
    ``unit/model``, its evaluation rows in ``unit/curve.csv`` and ``unit/attributes.csv``, and its
    points in ``unit/points.csv`` (the evaluation at its end is every Task 1 run's step 0)."""
    from ..biography.tasks import train_task0
    from ..continual.methods import Method

    started = time.perf_counter()
    base, tasks = _base_and_tasks(config)
    method = Method.seq() if lamol is None else Method.lamol(lamol)
    result = train_task0(base.model, base.tokenizer, tasks, recipe_of(config), method=method)
    base.model.save_pretrained(os.fspath(unit / MODEL_DIR), safe_serialization=True)
    result.curve.to_csv(unit / "curve.csv", index=False)
    result.per_attribute.to_csv(unit / ATTRIBUTES, index=False)
    result.points.to_csv(unit / "points.csv", index=False)
    last = result.curve[result.curve["task_index"] == 0]
    last = last[last["step"] == last["step"].max()].set_index(["eval_task", "eval_set"])["exact_match"]
    return {"method": method.label, "task0_test": float(last[("task0", "test")]),
            "task0_val": float(last[("task0", "val")]), "seconds": time.perf_counter() - started}


def fisher_job(config: CompareConfig, unit: Path, task0_unit: Path) -> dict[str, Any]:
    """EWC's Fisher of Task 0's training data at the end of Task 0 (the paper's batch-size-weighted
    squared batch-mean gradients), in ``unit/fisher.safetensors``."""
    from ..continual.ewc import batch_fisher, save_fisher

    started = time.perf_counter()
    base, tasks = _base_and_tasks(config)
    model = _load_model(task0_unit / MODEL_DIR)
    fisher = batch_fisher(model, base.tokenizer, tasks[0].train, batch_size=config.recipe.batch_size,
                          source=tasks[0].name, max_examples=config.fisher_max_examples)
    save_fisher(fisher, unit / "fisher.safetensors")
    return {"n_examples": fisher.n_examples, "sum": fisher.total(), "seconds": time.perf_counter() - started}


def run_job(config: CompareConfig, unit: Path, candidate: Candidate, seed: int, task0_unit: Path,
            fisher_unit: Optional[Path] = None, checkpoints: bool = False) -> dict[str, Any]:
    """The new tasks from the Task 0 model with one candidate and seed: ``unit/curve.csv`` and
    ``unit/points.csv`` (the run's tables), and with ``checkpoints`` the last task's weight-only
    checkpoints in ``unit/checkpoints`` (what Task Vector edits)."""
    import shutil

    from ..biography.tasks import train_task1
    from ..continual.ewc import load_fisher
    from ..continual.preliminary import PreliminaryRuns

    started = time.perf_counter()
    base, all_tasks = _base_and_tasks(config)
    tasks = tasks_for_seed(config, all_tasks, seed)
    model = _load_model(task0_unit / MODEL_DIR)
    fisher = [load_fisher(fisher_unit / "fisher.safetensors")] if fisher_unit is not None else []
    checkpoint_dir = unit / CHECKPOINTS if checkpoints else None
    result = train_task1(model, base.tokenizer, tasks, candidate.method, seed=seed, recipe=recipe_of(config),
                         checkpoint_dir=checkpoint_dir, fisher=fisher,
                         projection=candidate.projection or PreliminaryRuns(), pseudo_ratio=config.pseudo_ratio,
                         start_evaluation=_start_evaluation(task0_unit, tasks))
    if checkpoint_dir is not None:  # Task Vector reads the last task's checkpoints only
        for task in tasks[1:-1]:
            shutil.rmtree(checkpoint_dir / task.name, ignore_errors=True)
    result.curve.to_csv(unit / "curve.csv", index=False)
    result.points.to_csv(unit / "points.csv", index=False)
    checks = list(result.frozen_checks.values())  # Freeze(k): one per new task
    return {"label": candidate.label, "seed": seed, "seconds": time.perf_counter() - started,
            "frozen_bit_identical": all(c.ok for c in checks) if checks else None,
            "frozen_tensors": sum(len(c.identical) for c in checks)}


def _checkpoint_states(directory: Path, steps: Sequence[int]) -> dict[int, dict[str, Any]]:
    from safetensors.torch import load_file

    return {step: load_file(os.fspath(directory / f"checkpoint-{step}" / "model.safetensors")) for step in steps}


def task_vector_job(config: CompareConfig, unit: Path, task0_unit: Path, seq_unit: Path,
                    candidates: Sequence[tuple[int, str, float]]) -> dict[str, Any]:
    """Score Task Vector edits θ_k − α·(θ_e − θ_start) of one SEQ run on every evaluation set.

    θ_start is the Task 0 model; θ_k and θ_e are checkpoints of the SEQ run's last task. Each
    candidate is ``(k, e, α)`` with ``e`` the point ``"stop"`` or ``"end"`` of that task (its step
    is read from the run). Writes ``unit/scores.csv``: ``k``, ``e``, ``e_step``, ``alpha`` and one
    ``<task>/<set>`` column per evaluation set.
    """

    from ..continual.evaluation import SequenceEvaluator
    from ..continual.task_vector import task_vector_sweep

    started = time.perf_counter()
    base, tasks = _base_and_tasks(config)
    model = _load_model(task0_unit / MODEL_DIR)
    start = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    points = pd.read_csv(seq_unit / "points.csv")
    last = points[points["task_index"] == points["task_index"].max()].set_index("point")["step"]
    e_steps = {"stop": int(last["early_stop"]), "end": int(last["end"])}
    directory = seq_unit / CHECKPOINTS / tasks[-1].name
    needed = sorted({k for k, _, _ in candidates} | set(e_steps.values()))
    states = _checkpoint_states(directory, needed)
    evaluator = SequenceEvaluator(base.tokenizer, tasks)
    frames = []
    for e in ("stop", "end"):
        wanted = {(k, a) for k, point, a in candidates if point == e}
        if wanted:
            scored = task_vector_sweep(model, evaluator, start, states, sorted({a for _, a in wanted}),
                                       ends=[e_steps[e]], ks=sorted({k for k, _ in wanted}), progress=False)
            keep = [(int(k), float(a)) in wanted for k, a in zip(scored["k"], scored["alpha"])]
            frames.append(scored[keep].assign(e=e, e_step=e_steps[e]))
    scores = pd.concat(frames, ignore_index=True)
    scores = scores[["k", "e", "e_step", "alpha", *[c for c in scores.columns if "/" in c]]]
    scores.to_csv(unit / "scores.csv", index=False)
    return {"candidates": len(scores), "seconds": time.perf_counter() - started}
