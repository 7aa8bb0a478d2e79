"""Run a comparison of continual-learning methods on the Biography tasks: :func:`run_comparison`.

The work is a graph of units (:mod:`.jobs`), run by ``jobs`` one-thread worker processes as soon
as what they need is done:

1. Task 0 from the base model, once (and once more per LAMOL λ, whose Task 0 trains with its
   language-model term); EWC's Task 0 Fisher, once;
2. on the *selection seed* (the first), a run of every setting of every family; SEQ on every
   seed (with the last task's checkpoints when Task Vector is compared). Each run starts from the
   Task 0 model and records Task 0's evaluation of it as its step 0 (not scored again); runs on
   the other seeds do not score the validation people, which only the selection seed's choices read;
3. as soon as a family's selection-seed runs are done, its setting is chosen on the Task 0
   validation people (:mod:`.selection`) and runs on the other seeds; a family given one setting
   runs it on every seed at once;
4. Task Vector: every (k, α) edit of the selection seed's SEQ run is scored, (k, α) is chosen the
   same way (k as its distance to the early-stop point, which differs between seeds), and the
   chosen edit (with its α curve) is scored on every seed's SEQ run.

Ready units start in :func:`launch_order`: first those that other units wait on (the selection
seed's runs that a choice reads, the Fisher), so that the runs a choice unlocks interleave with
the independent ones instead of leaving a worker idle at the end.

Every unit keeps its files in its own folder (:mod:`.store`); with ``resume`` the finished ones
are read back instead of being run again. The tables (:class:`ComparisonResult`) are built from
those files alone.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
from tqdm.auto import tqdm

from ..errors import UsageError
from . import jobs as J
from .config import CompareConfig
from .rows import run_matrix, run_row, task_vector_row
from .selection import Choice, choose_setting
from .spec import Candidate, MethodSpec, parse_methods
from .store import ComparisonStore

__all__ = ["ComparisonResult", "run_comparison"]

logger = logging.getLogger(__name__)

# SEQ first (every choice compares with its selection-seed run, and Task Vector edits its runs), then
# the longest runs, so that the short ones fill the end.
_PRIORITY = {"task0": 0, "fisher": 1, "SEQ": 1, "GP": 2, "LAMOL": 3, "EWC": 4, "REPLAY": 5, "MIX": 5, "Freeze": 6,
             "taskvector": 7}


@dataclass
class ComparisonResult:
    """What a comparison measured (every table tidy, fractions for exact match).

    Attributes:
        config: the comparison's configuration.
        methods: one row per family × seed at its chosen setting: ``method``, ``setting``,
            ``label``, ``seed``, :data:`~.rows.ROW_COLUMNS`, ``chosen_on_validation``.
        candidates: the selection seed's row of every setting tried (Task Vector: every (k, α)),
            ``eligible`` and ``chosen`` marked.
        accuracy: the accuracy matrices at the early-stop points, long: ``method``, ``setting``,
            ``seed``, ``after``, ``task``, ``exact_match``.
        task_vector_alpha: the chosen θ_k's edits over α, per seed: ``seed``, ``k``, ``alpha``,
            ``task0_test``, ``task0_val``, ``last_task``.
        choices: family → how its setting was chosen.
        task0: Task 0 after Task 0, per variant (``plain``, ``lamol-…``).
        seconds: wall-clock seconds per unit that ran in this call (resumed ones are absent).
    """

    config: CompareConfig
    methods: pd.DataFrame
    candidates: pd.DataFrame
    accuracy: pd.DataFrame
    task_vector_alpha: pd.DataFrame
    choices: dict[str, Choice] = field(default_factory=dict)
    task0: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Unit:
    key: str
    folder: Path
    fn: Callable[..., dict[str, Any]]  # fn(config, folder, *args) -> the record of done.json
    args: tuple[Any, ...]
    deps: tuple[str, ...]
    priority: int
    # Other units wait on its result: a selection-seed run that a choice of setting reads, a SEQ run
    # that Task Vector edits, the Fisher that EWC runs read. Launched first, so that the units it
    # unlocks do not queue behind independent ones and leave a worker idle at the end.
    unlocks: bool = False


def launch_order(unit: _Unit) -> tuple[bool, int, str]:
    """The order in which ready units start: those that unlock others first, then by family
    (:data:`_PRIORITY`), then by key (deterministic)."""
    return (not unit.unlocks, unit.priority, unit.key)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _needs_fisher(candidate: Candidate) -> bool:
    """EWC(λ > 0) reads Task 0's Fisher (EWC(0) is SEQ)."""
    return candidate.method is not None and candidate.method.kind == "ewc" and bool(candidate.method.param)


def _variant(candidate: Candidate) -> str:
    lam = candidate.method.param if candidate.method is not None and candidate.method.kind == "lamol" else None
    return "plain" if not lam else f"lamol-{candidate.slug.split('-', 1)[1]}"


class _Plan:
    """Which units exist, given what has finished (the comparison's logic; the loop runs them)."""

    def __init__(self, config: CompareConfig, specs: tuple[MethodSpec, ...], store: ComparisonStore):
        self.config, self.specs, self.store = config, specs, store
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}
        self.matrices: dict[tuple[str, int], pd.DataFrame] = {}
        self.choices: dict[str, Choice] = {}
        self.task_vector: Optional[MethodSpec] = next((s for s in specs if s.family == "TaskVector"), None)
        self.seq = specs[0].candidates[0]
        # Families whose setting is chosen on the selection seed's runs (Task Vector chooses its own way).
        self.chosen_families = {s.family for s in specs if s.chosen_on_validation and s.family != "TaskVector"}

    # -- units ---------------------------------------------------------------------------------
    def _task0(self, variant: str, lamol: Optional[float]) -> _Unit:
        return _Unit(f"task0/{variant}", self.store.task0_dir(variant), J.task0_job, (lamol,), (),
                     _PRIORITY["task0"])

    def _run(self, candidate: Candidate, seed: int) -> _Unit:
        variant = _variant(candidate)
        deps = [f"task0/{variant}"]
        fisher = None
        if _needs_fisher(candidate):
            deps.append("fisher")
            fisher = self.store.fisher_dir()
        checkpoints = candidate.family == "SEQ" and (
            self.task_vector is not None or (self.config.seq_checkpoints and seed == self.config.selection_seed))
        chosen = self.chosen_families
        selection = seed == self.config.selection_seed and (
            candidate.family in chosen or (candidate.family == "SEQ" and bool(chosen)))  # choices read SEQ's row
        unlocks = selection or (candidate.family == "SEQ" and self.task_vector is not None)
        return _Unit(f"run/{candidate.slug}/s{seed}", self.store.run_dir(candidate.slug, seed), J.run_job,
                     (candidate, seed, self.store.task0_dir(variant), fisher, checkpoints), tuple(deps),
                     _PRIORITY.get(candidate.family, 9), unlocks)

    def _task_vector(self, name: str, seed: int, candidates: list[tuple[int, str, float]]) -> _Unit:
        return _Unit(f"taskvector/{name}", self.store.task_vector_dir(name), J.task_vector_job,
                     (self.store.task0_dir("plain"), self.store.run_dir(self.seq.slug, seed), candidates),
                     ("task0/plain", f"run/{self.seq.slug}/s{seed}"), _PRIORITY["taskvector"])

    def units(self, done: dict[str, dict[str, Any]]) -> list[_Unit]:
        """Every unit known now (idempotent: the loop adds the new ones)."""
        config, sel = self.config, self.config.selection_seed
        units = [self._task0("plain", None)]
        trained = [c for s in self.specs for c in s.candidates if c.trains]
        for candidate in trained:
            if _variant(candidate) != "plain":
                units.append(self._task0(_variant(candidate), float(candidate.method.param)))  # type: ignore[union-attr,arg-type]
        if any(_needs_fisher(c) for c in trained):
            units.append(_Unit("fisher", self.store.fisher_dir(), J.fisher_job,
                               (self.store.task0_dir("plain"),), ("task0/plain",), _PRIORITY["fisher"], True))
        for spec in self.specs:
            if spec.family == "TaskVector":
                continue
            if not spec.chosen_on_validation:
                units += [self._run(spec.candidates[0], seed) for seed in config.seeds]
                continue
            units += [self._run(c, sel) for c in spec.candidates]
            chosen = self._choose(spec, done)
            if chosen is not None:
                units += [self._run(chosen, seed) for seed in config.seeds if seed != sel]
        if self.task_vector is not None:
            units += self._task_vector_units(done)
        return units

    # -- choices -------------------------------------------------------------------------------
    def row(self, candidate_slug: str, seed: int) -> dict[str, Any]:
        """A finished run's :func:`~.rows.run_row` (read from its files once)."""
        key = (candidate_slug, seed)
        if key not in self.rows:
            folder = self.store.run_dir(candidate_slug, seed)
            curve, points = pd.read_csv(folder / "curve.csv"), pd.read_csv(folder / "points.csv")
            self.rows[key] = run_row(curve, points, dip_window=J.recipe_of(self.config).dip_window)
            self.matrices[key] = run_matrix(curve, points)
        return self.rows[key]

    def _choose(self, spec: MethodSpec, done: dict[str, dict[str, Any]]) -> Optional[Candidate]:
        if spec.family in self.choices:
            return next(c for c in spec.candidates if c.setting == self.choices[spec.family].setting)
        sel = self.config.selection_seed
        keys = [f"run/{c.slug}/s{sel}" for c in (*spec.candidates, self.seq)]
        if not all(k in done for k in keys):
            return None
        table = pd.DataFrame([{"setting": c.setting, **self.row(c.slug, sel)} for c in spec.candidates])
        choice = choose_setting(table, self.row(self.seq.slug, sel)["task1_stop"], self.config.tolerance)
        self.choices[spec.family] = choice
        logger.info("%s: chose %s (%s)", spec.family, choice.setting, choice.reason)
        return next(c for c in spec.candidates if c.setting == choice.setting)

    def _task_vector_ks(self, seed: int) -> list[int]:
        """θ_k candidates: the SEQ run's last-task checkpoints ≤ its early-stop point, every
        second one of the dense window, and the early-stop point itself."""
        recipe = J.recipe_of(self.config)
        stop = int(self.row(self.seq.slug, seed)["stop_step"])
        saved = recipe.schedule().checkpoint_steps(recipe.task1_steps)
        every = 2 * recipe.checkpoint_every
        return sorted({k for k in saved if k <= stop and k % every == 0} | {stop})

    def _task_vector_units(self, done: dict[str, dict[str, Any]]) -> list[_Unit]:
        assert self.task_vector is not None
        sel = self.config.selection_seed
        alphas = [float(c.alpha) for c in self.task_vector.candidates]  # type: ignore[arg-type]
        if f"run/{self.seq.slug}/s{sel}" not in done:
            return []
        sweep = [(k, "stop", a) for k in self._task_vector_ks(sel) for a in alphas]
        units = [self._task_vector("sweep", sel, sweep)]
        if "taskvector/sweep" not in done:
            return units
        before_stop, alpha_chosen = self._choose_task_vector()
        for seed in self.config.seeds:
            if f"run/{self.seq.slug}/s{seed}" not in done:
                continue
            k = self.task_vector_k(seed, before_stop)
            candidates = [(k, "stop", a) for a in alphas] + [(k, "end", alpha_chosen)]
            units.append(self._task_vector(f"s{seed}", seed, candidates))
        return units

    def task_vector_k(self, seed: int, before_stop: int) -> int:
        """θ_k of a seed's SEQ run for the chosen distance to its early-stop point: the latest saved
        checkpoint at or before ``stop − before_stop`` (the early-stop point itself for 0)."""
        target = int(self.row(self.seq.slug, seed)["stop_step"]) - before_stop
        return max([k for k in self._task_vector_ks(seed) if k <= target], default=0)

    def task_vector_sweep(self) -> pd.DataFrame:
        """The selection seed's sweep, one row per (k, α) with its ``setting``: θ_k named by its
        distance to the early-stop point e (``k=e-30,alpha=0.4``), which carries to the other seeds,
        whose early-stop points differ."""
        sweep = pd.read_csv(self.store.task_vector_dir("sweep") / "scores.csv")
        return sweep.assign(setting=[_task_vector_setting(int(e) - int(k), a)
                                     for k, e, a in zip(sweep["k"], sweep["e_step"], sweep["alpha"])])

    def _choose_task_vector(self) -> tuple[int, float]:
        """(steps before the early-stop point, α) of the chosen edit."""
        if "TaskVector" not in self.choices:
            sweep = self.task_vector_sweep()
            last_column = _last_task_column(sweep)
            table = sweep.assign(task0_val_stop=sweep["task0/val"], task1_stop=sweep[last_column])
            seq_task1 = self.row(self.seq.slug, self.config.selection_seed)["task1_stop"]
            self.choices["TaskVector"] = choose_setting(table, seq_task1, self.config.tolerance)
            logger.info("TaskVector: chose %s (%s)", self.choices["TaskVector"].setting,
                        self.choices["TaskVector"].reason)
        k_text, alpha_text = self.choices["TaskVector"].setting.split(",")
        return int(k_text.split("-")[1]), float(alpha_text.split("=")[1])


def _task_vector_setting(before_stop: int, alpha: float) -> str:
    """``k=e-30,alpha=0.4``: θ_k 30 steps before the early-stop point e, scale α."""
    return f"k=e-{before_stop},alpha={alpha:g}"


def _last_task_column(scores: pd.DataFrame) -> str:
    tasks = [c for c in scores.columns if "/" in c and not c.startswith("task0/")]
    return sorted(tasks, key=lambda c: int(c.split("/")[0][len("task"):]))[-1]


def _sigterm_as_interrupt() -> Any:
    """Make SIGTERM (``kill``) end the comparison like Ctrl-C, so its worker processes are stopped
    too instead of running on. Returns the previous handler (None off the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's worker processes now (a unit killed midway is redone on ``--resume``)."""
    for process in list(getattr(pool, "_processes", {}).values()):  # no public API before Python 3.14
        if process.is_alive():
            process.terminate()


def _run_units(plan: _Plan, store: ComparisonStore, jobs: int, progress: bool) -> dict[str, float]:
    """Run every unit of ``plan`` (finished ones are read back), ``jobs`` at a time."""
    done: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    known: dict[str, _Unit] = {}
    running: dict[Future, _Unit] = {}
    bar = tqdm(desc="compare", unit="run", disable=not progress, total=0)
    pool = (ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_worker_init) if jobs > 1 else None)

    def refresh() -> None:
        changed = True
        while changed:  # finished units read back can make more units known
            changed = False
            for unit in plan.units(done):
                if unit.key in known:
                    continue
                known[unit.key] = unit
                bar.total += 1
                record = store.done(unit.folder)
                if record is not None:
                    done[unit.key] = record
                    bar.update(1)
                    changed = True
        bar.refresh()

    def finish(unit: _Unit, record: dict[str, Any]) -> None:
        done[unit.key] = store.finish(unit.folder, record)
        seconds[unit.key] = float(record.get("seconds", math.nan))
        bar.update(1)
        bar.set_postfix_str(unit.key)
        logger.info("%s done in %.0f s", unit.key, seconds[unit.key])

    finished_cleanly = False
    previous_sigterm = _sigterm_as_interrupt()
    try:
        refresh()
        while True:
            busy = {u.key for u in running.values()}
            ready = sorted((u for u in known.values() if u.key not in done and u.key not in busy
                            and all(d in done for d in u.deps)), key=launch_order)
            if pool is None:
                if not ready:
                    break
                unit = ready[0]
                finish(unit, unit.fn(plan.config, store.begin(unit.folder), *unit.args))
                refresh()
                continue
            for unit in ready[: max(jobs - len(running), 0)]:
                running[pool.submit(unit.fn, plan.config, store.begin(unit.folder), *unit.args)] = unit
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                finish(running.pop(future), future.result())
            refresh()
        finished_cleanly = True
    finally:
        if pool is not None:
            if not finished_cleanly:  # interrupted or failed: stop the runs in progress too
                _terminate_workers(pool)
            pool.shutdown(wait=finished_cleanly, cancel_futures=True)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        bar.close()
    left = [k for k in known if k not in done]
    if left:
        raise UsageError(f"units left that cannot run: {left}")
    return seconds


def run_comparison(config: CompareConfig, out_dir: os.PathLike | str, *, jobs: int = 2, resume: bool = False,
                   overwrite: bool = False, progress: bool = True) -> ComparisonResult:
    """Compare the methods of ``config`` on the Biography tasks (module docstring).

    Args:
        config: methods, tasks, seeds, tolerance and recipe (:class:`~.config.CompareConfig`).
        out_dir: where the comparison keeps its units (and the report goes, :mod:`spurious_diag.report.compare`).
        jobs: worker processes (one thread each); 1 runs every unit in this process.
        resume: continue the comparison in ``out_dir``: finished units are not run again.
        overwrite: replace what ``out_dir`` holds (without ``resume``).
        progress: show the progress bar (runs also show their training bars).

    Raises:
        UsageError: bad ``--methods``, ``jobs`` < 1, or ``resume`` with other settings.
        OutputDirError: a non-empty ``out_dir`` without ``resume`` or ``overwrite``.
    """
    if jobs < 1:
        raise UsageError(f"jobs must be >= 1, got {jobs}")
    specs = parse_methods(config.methods)
    if config.base_dir is not None:  # a bad --base fails here, before anything is written
        from ..biography.pretrain import read_base_manifest

        read_base_manifest(config.base_dir)
    store = ComparisonStore(out_dir, config.to_dict(), resume=resume, overwrite=overwrite)
    plan = _Plan(config, specs, store)
    seconds = _run_units(plan, store, jobs, progress)
    return _collect(plan, seconds)


def _collect(plan: _Plan, seconds: dict[str, float]) -> ComparisonResult:
    config, sel = plan.config, plan.config.selection_seed
    methods, candidates, accuracy, alpha_rows = [], [], [], []

    def add_matrix(family: str, setting: str, seed: int, matrix: pd.DataFrame) -> None:
        long = matrix.reset_index().melt(id_vars="after", var_name="task", value_name="exact_match")
        accuracy.append(long.assign(method=family, setting=setting, seed=seed))

    for spec in plan.specs:
        if spec.family == "TaskVector":
            continue
        chosen = (plan.choices[spec.family].setting if spec.chosen_on_validation else spec.candidates[0].setting)
        for c in spec.candidates:
            row = plan.row(c.slug, sel)
            candidates.append({"method": spec.family, "setting": c.setting, "label": c.label, "seed": sel, **row,
                               "eligible": row["task1_stop"] >= plan.row(plan.seq.slug, sel)["task1_stop"]
                               - config.tolerance, "chosen": c.setting == chosen})
        candidate = next(c for c in spec.candidates if c.setting == chosen)
        for seed in config.seeds:
            methods.append({"method": spec.family, "setting": chosen, "label": candidate.label, "seed": seed,
                            **plan.row(candidate.slug, seed), "chosen_on_validation": spec.chosen_on_validation})
            add_matrix(spec.family, chosen, seed, plan.matrices[(candidate.slug, seed)])
    if plan.task_vector is not None:
        sweep = plan.task_vector_sweep()
        last_column = _last_task_column(sweep)
        choice = plan.choices["TaskVector"]
        seq_task1 = plan.row(plan.seq.slug, sel)["task1_stop"]
        for _, r in sweep.iterrows():
            candidates.append({"method": "TaskVector", "setting": r["setting"], "label": f"TaskVector({r['setting']})",
                               "seed": sel, "task0_stop": r["task0/test"], "task0_val_stop": r["task0/val"],
                               "task1_stop": r[last_column], "stop_step": r["e_step"],
                               "eligible": r[last_column] >= seq_task1 - config.tolerance,
                               "chosen": r["setting"] == choice.setting})
        before_stop, alpha_chosen = plan._choose_task_vector()
        for seed in config.seeds:
            scores = pd.read_csv(plan.store.task_vector_dir(f"s{seed}") / "scores.csv")
            stop = scores[scores["e"] == "stop"]
            at_alpha = stop[(stop["alpha"] - alpha_chosen).abs() < 1e-12].iloc[0]
            end = scores[scores["e"] == "end"].iloc[0]
            seq_row = plan.row(plan.seq.slug, seed)
            row, matrix = task_vector_row(seq_row, plan.matrices[(plan.seq.slug, seed)], at_alpha, end)
            setting = _task_vector_setting(before_stop, alpha_chosen)
            methods.append({"method": "TaskVector", "setting": setting,
                            "label": f"TaskVector(k={int(at_alpha['k'])},alpha={alpha_chosen:g})",
                            "seed": seed, **row, "chosen_on_validation": True})
            add_matrix("TaskVector", setting, seed, matrix)
            for _, r in stop.iterrows():
                alpha_rows.append({"seed": seed, "k": int(r["k"]), "alpha": float(r["alpha"]),
                                   "task0_test": r["task0/test"], "task0_val": r["task0/val"],
                                   "last_task": r[last_column]})
    variants = dict.fromkeys(["plain", *(_variant(c) for s in plan.specs for c in s.candidates if c.trains)])
    task0 = {v: record for v in variants if (record := plan.store.done(plan.store.task0_dir(v))) is not None}
    return ComparisonResult(
        config, pd.DataFrame(methods), pd.DataFrame(candidates),
        pd.concat(accuracy, ignore_index=True)[["method", "setting", "seed", "after", "task", "exact_match"]],
        pd.DataFrame(alpha_rows, columns=["seed", "k", "alpha", "task0_test", "task0_val", "last_task"]),
        dict(plan.choices), task0, seconds)
