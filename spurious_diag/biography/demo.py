"""The main job: the Biography scenario end to end, from the shipped base model to a report.

Stages (each logged, with a progress bar over the training runs):

1. **Task 0**: QA fine-tuning of the shipped base model (:func:`~spurious_diag.biography.recipe.train_task0`).
2. **Task 1**: SEQ (with a dense checkpoint chain) and the Freeze(k) sweep, each from the Task 0
   model, in ``jobs`` one-thread worker processes; SEQ goes first.
3. **Diagnosis** of SEQ at its dip (the step of lowest Task 0 accuracy in the dip window), in
   this process while the workers train the sweep:
   the recovery settings are chosen on the Task 0 *validation* people, then
   :func:`~spurious_diag.probes.diagnose` runs every probe on the *test* people, with the
   shipped base as the never-aligned control, and recommends a freeze depth k.
4. **Freeze at the recommended depth**: the Freeze(k) run of the sweep (run now if k is not
   in the sweep). The best k on the validation split is reported beside it.
5. An audit of the update geometry (base → Task 0 → SEQ's dip) and of SEQ's trajectory.
6. Tables (CSV), ``summary.json`` with the targets, figures and ``report.md``.

Every choice reads validation people; the test people only report.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..continual.methods import Method, parse_method
from ..continual.result import SequenceResult
from ..continual.tables import accuracy_matrix, run_summary
from ..io.chain import list_chain
from ..probes.diagnose import diagnose
from ..probes.options import DiagnoseOptions
from ..probes.recovery import select_recovery_settings
from ..report.demo import write_demo_outputs
from ..ties import first_best
from ..updates.engine import audit
from ..updates.options import AuditOptions
from .demo_config import DemoConfig
from .pretrain import load_base_model, shipped_base_dir
from .recipe import BiographyRecipe, check_targets, probe_inputs
from .tasks import biography_tasks, train_task0, train_task1
from .views import (early_window, feature_view_job, fisher_angle_job, forgetting_maps_job, landscape_job,
                    recovery_curve_job, summarize_views, weight_view)

__all__ = ["DemoRun", "run_demo", "best_k_on_validation"]

logger = logging.getLogger(__name__)

@dataclass
class DemoRun:
    """What :func:`run_demo` measured (also written to its output directory).

    Attributes:
        out: the output directory.
        summary: the content of ``summary.json``.
        tables: name → DataFrame, each written as ``<name>.csv``.
        results: method label → :class:`~spurious_diag.continual.result.SequenceResult` of its Task 1.
        diagnosis: the :class:`~spurious_diag.probes.diagnosis.Diagnosis` of SEQ at its dip.
        audit: the :class:`~spurious_diag.updates.engine.AuditResult` of base → Task 0 → SEQ dip.
    """

    out: Path
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(repr=False)
    results: dict[str, SequenceResult] = field(repr=False)
    diagnosis: Any = field(repr=False)
    audit: Any = field(repr=False)


# ----------------------------------------------------------------------------- Task 1 workers

def _worker_init() -> None:
    torch.set_num_threads(1)


def _task1_job(task0_dir: str, label: str, seed: int, recipe: BiographyRecipe, checkpoint_dir: Optional[str],
               save_end: Optional[str]) -> SequenceResult:
    """One Task 1 run from the saved Task 0 model (a worker process, or in-process)."""
    from transformers import LlamaForCausalLM

    base = load_base_model()
    model = LlamaForCausalLM.from_pretrained(task0_dir, local_files_only=True).eval()
    result = train_task1(model, base.tokenizer, biography_tasks(base.scenario()), parse_method(label), seed=seed,
                         recipe=recipe, checkpoint_dir=checkpoint_dir)
    if save_end:
        model.save_pretrained(save_end)
        base.tokenizer.save_pretrained(save_end)
    return result


class _Deferred:
    """A future that runs its job in this process when its result is first asked for (``jobs`` = 1)."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._fn, self._args, self._done, self._value = fn, args, False, None

    def result(self) -> Any:
        if not self._done:
            self._value, self._done = self._fn(*self._args), True
        return self._value  # type: ignore[return-value]


class WorkerPool:
    """Runs jobs (Task 1 runs, the views) in ``jobs`` one-thread worker processes (spawned), or
    lazily in this process when ``jobs`` is 1, so the caller can work (e.g. diagnose SEQ) while the
    sweep trains. Jobs start in the order they are submitted."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._pool: Optional[ProcessPoolExecutor] = None

    def __enter__(self) -> "WorkerPool":
        if self.jobs > 1:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=exc[0] is not None)

    def submit(self, task0_dir: str, label: str, config: DemoConfig, checkpoint_dir: Optional[str] = None,
               save_end: Optional[str] = None, recipe: Optional[BiographyRecipe] = None) -> Any:
        """Start (or defer) one Task 1 run (with ``config.recipe`` unless ``recipe`` is given);
        returns an object whose ``result()`` is its SequenceResult."""
        return self.call(_task1_job, task0_dir, label, config.seed, recipe or config.recipe, checkpoint_dir, save_end)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start (or defer) ``fn(*args)`` (a module-level function); returns an object with ``result()``."""
        return self._pool.submit(fn, *args) if self._pool is not None else _Deferred(fn, *args)


# ----------------------------------------------------------------------------- tables

def _summary_row(result: SequenceResult, recipe: BiographyRecipe) -> dict[str, Any]:
    return run_summary(result, dip_window=recipe.dip_window).iloc[0].to_dict()


def _scores(row: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one run summary, nested for summary.json."""
    out: dict[str, Any] = {"stop_reached": bool(row["stop_reached"])}
    for point in ("after", "dip", "stop", "end"):
        out[f"{point}_step"] = int(row[f"{point}_step"])
    for key, name in (("task0_test", "task0"), ("task0_val", "task0_validation"), ("task1_train", "task1")):
        out[name] = {point: float(row[f"{key}_{point}"]) for point in ("after", "dip", "stop", "end")}
    return out


def _sweep_table(rows: dict[str, dict[str, Any]], ks: Sequence[int]) -> pd.DataFrame:
    """One row per method (SEQ first, then Freeze(k)): exact match at every point, tidy wide."""
    records = []
    for label in ["SEQ", *(Method.freeze(k).label for k in ks)]:
        row = rows[label]
        record = {"method": label, "k": parse_method(label).frozen_blocks, "stop_reached": bool(row["stop_reached"])}
        for point in ("dip", "stop", "end"):
            record[f"{point}_step"] = int(row[f"{point}_step"])
        for key in ("task0_test", "task0_val", "task1_train"):
            for point in ("after", "dip", "stop", "end"):
                record[f"{key}_{point}"] = float(row[f"{key}_{point}"])
        records.append(record)
    return pd.DataFrame(records)


def best_k_on_validation(sweep: pd.DataFrame) -> Optional[int]:
    """The k whose Task 0 *validation* exact match at the early-stop point is highest, among the
    k whose Task 1 reached the early-stop target (all k when none did)."""
    rows = sweep[sweep["k"].notna()]
    if rows.empty:
        return None
    reached = rows[rows["stop_reached"]]
    rows = reached if not reached.empty else rows
    return int(rows["k"].iloc[first_best(rows["task0_val_stop"].tolist())])


# ----------------------------------------------------------------------------- the pipeline

def _slug(label: str) -> str:
    """A method label as a folder name: ``Freeze(1)`` → ``Freeze-1``, ``REPLAY(0.1)`` → ``REPLAY-0.1``."""
    return label.replace("(", "-").replace(")", "").replace(",", "_")


def _chain_dir(chains: Path, label: str) -> Path:
    """Where a Task 1 run's ``checkpoint-N`` chain lies (the runner adds the task's folder)."""
    return chains / _slug(label) / "task1"


def _checkpoints_only(recipe: BiographyRecipe) -> BiographyRecipe:
    """The recipe with the same checkpoints but full evaluations only at the window's end and the last step."""
    return dataclasses.replace(recipe, dense_every=recipe.dip_window, sparse_every=recipe.task1_steps,
                               stop_check_every=0)


def _collect_views(views: dict[str, Any], landscapes: dict[str, dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """The views' futures → tables: the maps, ``recovery_by_step``, and every method's landscape
    (``landscapes``: those computed here, by method) in one table."""
    tables: dict[str, pd.DataFrame] = {}
    for name, future in views.items():
        result = future.result()
        if name.startswith("landscape "):
            landscapes[name.removeprefix("landscape ")] = result
        elif isinstance(result, pd.DataFrame):
            tables["recovery_by_step"] = result
        else:
            tables.update(result)
    for key in ("landscape", "landscape_trajectory"):
        frames = [result[key] for result in landscapes.values()]
        if frames:
            tables[key] = pd.concat(frames, ignore_index=True)
    return tables


def _save_model(model: Any, tokenizer: Any, path: Path) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return os.fspath(path)


def run_demo(out_dir: os.PathLike | str, config: DemoConfig = DemoConfig()) -> DemoRun:
    """Run the Biography scenario end to end and write its report into ``out_dir`` (which must exist).

    Returns:
        :class:`DemoRun`.
    """
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    started = time.perf_counter()
    timing: dict[str, float] = {}
    recipe = config.recipe
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="spurious-diag-demo-") as work_dir:
        work = Path(work_dir)
        models = out / "models" if config.keep_models else work / "models"

        logger.info("Task 0: %d QA steps from the shipped base model", recipe.task0_steps)
        # One thread throughout: this tiny model runs several times slower on two threads as soon
        # as the other core is busy (DESIGN.md §5), and the workers keep both cores busy.
        torch.set_num_threads(1)
        base = load_base_model()
        base_dir = os.fspath(shipped_base_dir())
        data = base.scenario()
        tasks = biography_tasks(data)
        task0_result = train_task0(base.model, base.tokenizer, tasks, recipe)
        task0_dir = _save_model(base.model, base.tokenizer, models / "task0")
        timing["task0_s"] = time.perf_counter() - started

        labels = ["SEQ", *(Method.freeze(k).label for k in config.freeze_ks)]
        replay = config.views.replay
        logger.info("Task 1: %s, and %s for the loss landscape (%d worker processes; the diagnosis of SEQ runs "
                    "beside the sweep)", ", ".join(labels), replay, max(config.jobs, 1))
        chains = work / "chains"
        chain_dir = _chain_dir(chains, "SEQ")
        # No time estimate: the runs finish in bursts (SEQ first, the sweep together later), so a
        # rate-based estimate misleads; the elapsed time and the runs done say where it stands.
        bar = tqdm(total=len(labels), desc="Task 1 runs", unit="run",
                   bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed} elapsed")
        with WorkerPool(config.jobs) as pool:
            pending = {label: pool.submit(task0_dir, label, config, os.fspath(chains / _slug(label)),
                                          os.fspath(models / "seq_end") if label == "SEQ" else None)
                       for label in labels}
            # REPLAY is trained for its loss landscape only: its checkpoints, few evaluations
            # (`spurious-diag compare` measures it against the other methods).
            replay_run = pool.submit(task0_dir, replay, config, os.fspath(chains / _slug(replay)),
                                     recipe=_checkpoints_only(recipe))
            results = {"SEQ": pending.pop("SEQ").result()}
            bar.update()
            timing["seq_s"] = time.perf_counter() - started - timing["task0_s"]
            rows = {"SEQ": _summary_row(results["SEQ"], recipe)}
            seq = rows["SEQ"]
            dip_step = int(seq["dip_step"])
            dip_dir = models / "seq_dip"
            shutil.copytree(chain_dir / f"checkpoint-{dip_step}", dip_dir)
            base.tokenizer.save_pretrained(dip_dir)
            window = early_window(dip_step, [step for step, _ in list_chain(os.fspath(chain_dir))],
                                  config.views.window_ratio)
            logger.info("the paper's views of SEQ: early window %d -> %d, in the workers as they free up", *window)
            views = {"maps": pool.call(forgetting_maps_job, task0_dir, os.fspath(chain_dir), config.views,
                                       config.seed)}

            logger.info("diagnosis of SEQ at its dip (step %d): choosing recovery settings on validation people",
                        dip_step)
            phase = time.perf_counter()
            inputs = probe_inputs(data, people=config.probe_people)
            dip_model = LlamaForCausalLM.from_pretrained(dip_dir, local_files_only=True).eval()
            control = load_base_model().model
            chosen, recovery_choice = select_recovery_settings(
                dip_model, control, base.tokenizer, inputs.recovery_pool, inputs.validation,
                config.recovery_candidates, n=max(config.recovery_ns))
            recovery = dataclasses.replace(chosen, ns=config.recovery_ns, seed=config.seed)
            # The recovery curve runs at the largest n (the diagnosis reports every n at the dip).
            views["recovery"] = pool.call(recovery_curve_job, task0_dir, os.fspath(chain_dir), base_dir,
                                          dataclasses.replace(recovery, ns=(max(recovery.ns),)), config.views)
            geometry = audit([base_dir, task0_dir, os.fspath(dip_dir)], AuditOptions(rank=8), progress=False)
            diagnosis = diagnose(task0_dir, os.fspath(dip_dir), inputs.held_out, base=control,
                                 new_task_records=inputs.new_task, pretraining_records=inputs.pretraining,
                                 recovery_records=inputs.recovery_pool, audit_result=geometry,
                                 tokenizer=base.tokenizer,
                                 options=DiagnoseOptions(recovery=recovery, seed=config.seed,
                                                         max_candidates=config.format_candidates))
            timing["diagnosis_s"] = time.perf_counter() - phase
            k = diagnosis.recommendation.k
            label = Method.freeze(k).label if k is not None else None
            if label is not None and label not in pending:
                logger.info("Task 1 with %s (the recommended depth is outside the sweep)", label)
                pending[label] = pool.submit(task0_dir, label, config, os.fspath(chains / _slug(label)))
                bar.total += 1

            # The cheap views here, then SEQ's landscape, while the workers train and map.
            phase = time.perf_counter()
            view_tables = weight_view(base_dir, task0_dir, os.fspath(chain_dir), window)
            view_tables["fisher_angle"], fisher_r = fisher_angle_job(task0_dir, view_tables["weight_view_pairs"],
                                                                     config.views)
            view_tables["fisher_correlation"] = pd.DataFrame([fisher_r])
            view_tables.update(feature_view_job(base_dir, task0_dir, os.fspath(chain_dir), window, config.views))
            landscapes = {"SEQ": landscape_job("SEQ", os.fspath(chain_dir), window, config.views)}
            replay_run.result()
            views[f"landscape {replay}"] = pool.call(landscape_job, replay, os.fspath(_chain_dir(chains, replay)),
                                                     window, config.views)
            for name, future in pending.items():
                results[name] = future.result()
                rows[name] = _summary_row(results[name], recipe)
                bar.update()
                if name == label:
                    views[f"landscape {name}"] = pool.call(landscape_job, name, os.fspath(_chain_dir(chains, name)),
                                                           window, config.views)
            view_tables.update(_collect_views(views, landscapes))
            timing["views_s"] = time.perf_counter() - phase
        bar.close()
        torch.set_num_threads(threads)
        timing["task1_and_diagnosis_s"] = time.perf_counter() - started - timing["task0_s"]

        logger.info("auditing SEQ's Task 1 trajectory (steps 0-%d)", recipe.dip_window)
        # The window where the paper finds the damage, at its even checkpoint spacing.
        trajectory_window = [(step, path) for step, path in list_chain(os.fspath(chain_dir))
                             if step <= recipe.dip_window]
        trajectory = audit([path for _, path in trajectory_window], AuditOptions(angles=False, pairs="trajectory"),
                           progress=False)
        trajectory.updates["to_step"] = trajectory.updates["to_ckpt"].map(lambda i: trajectory_window[int(i)][0])

    sweep_ks = sorted({*config.freeze_ks, *([k] if k is not None else [])})
    sweep = _sweep_table(rows, sweep_ks)
    best_k = best_k_on_validation(sweep)
    freeze_row = rows.get(label) if label else None
    summary: dict[str, Any] = {
        "scenario": {"name": "biography", "data_sha256": data.sha256, "sizes": data.sizes.as_dict(),
                     "base_model": os.fspath(shipped_base_dir())},
        "config": config.to_dict(),
        "task0_after": float(seq["task0_test_after"]),
        "seq": _scores(seq),
        "freeze": ({"k": k, "method": label, **_scores(freeze_row)} if freeze_row is not None else None),
        "best_k_validation": best_k,
        "best_k_validation_scores": (_scores(rows[Method.freeze(best_k).label]) if best_k is not None else None),
        "recovery": {
            "lr": recovery.lr, "steps": recovery.steps, "ns": list(recovery.ns),
            "chosen_on": "Task 0 validation people",
            "best_n": diagnosis.evidence.get("recovery_best_n"),
            "fraction": diagnosis.evidence.get("recovery_fraction"),
            "acc": diagnosis.evidence.get("recovery_acc"),
            "control_fraction": diagnosis.evidence.get("recovery_control_fraction"),
            "control_acc": diagnosis.evidence.get("recovery_control_acc"),
        },
        "diagnosis": {"at": "SEQ dip", "step": dip_step, "verdict": diagnosis.verdict, "reason": diagnosis.reason,
                      "recommended_k": k, "recommendation": diagnosis.recommendation.to_dict()},
        "targets": check_targets(seq, freeze_row or {}),
        "views": summarize_views(view_tables, dip_step=dip_step, window=window, correlation=fisher_r),
        "timing": timing,
    }
    tables = {
        "sweep": sweep,
        "runs": pd.DataFrame([rows[label] for label in rows]),
        "curve": pd.concat([task0_result.curve, *(r.curve for r in results.values())], ignore_index=True),
        "per_attribute": pd.concat([r.per_attribute for r in results.values()], ignore_index=True),
        "points": pd.concat([r.points for r in results.values()], ignore_index=True),
        "accuracy_matrix": _matrices(results, [m for m in ("SEQ", label) if m]),
        "recovery_choice": recovery_choice,
        "audit_updates": geometry.updates,
        "audit_pairs": geometry.pairs,
        "trajectory_updates": trajectory.updates,
        **{f"diagnosis_{name}": frame for name, frame in diagnosis.frames.items()},
        **view_tables,
    }
    timing["total_s"] = time.perf_counter() - started
    summary = write_demo_outputs(out, summary, tables)
    return DemoRun(out, summary, tables, results, diagnosis, geometry)


def _matrices(results: dict[str, SequenceResult], labels: Sequence[str]) -> pd.DataFrame:
    """R[after, on] of each method at the early-stop point and the end, long form."""
    frames = []
    for label in labels:
        for at in ("early_stop", "end"):
            matrix = accuracy_matrix(results[label], at=at)
            long = matrix.reset_index().melt(id_vars="after", var_name="task", value_name="exact_match")
            frames.append(long.assign(method=label, at=at))
    return pd.concat(frames, ignore_index=True)[["method", "at", "after", "task", "exact_match"]]
