"""The Biography benchmark: SEQ vs Freeze(k) vs REPLAY vs EWC on Task 0 → Task 1, from the shipped base.

Task 0 (QA on the Task 0 training people, held-out test/validation people) is trained once from
the shipped base model; every method then trains Task 1 (QA on new people) from that model,
for each seed of the Task 1 data order, in a pool of 1-thread worker processes. Task 0 is
evaluated densely early in Task 1 (every 10 steps up to 200) and sparsely after (every 100); Task 1's
accuracy is checked every 10 steps to find its early-stop point (the first evaluation where
it reaches 0.90). Freeze(k)'s k is chosen on the Task 0 *validation* split at the early-stop
point, among the k whose Task 1 reached 0.90 in every seed; the test split only reports.

Targets (means over seeds):
  1. Task 0 held-out exact match after Task 0 >= 0.70;
  2. SEQ: Task 0 drops by >= 30 points within the first 200 steps of Task 1;
  3. at the dip, the chosen Freeze(k)'s Task 0 >= SEQ's + 30 points;
  4. at the early-stop point, the chosen Freeze(k)'s Task 0 >= SEQ's + 10 points, and its
     Task 1 within 10 points of SEQ's.

    python benchmarks/bench_biography.py [--jobs 2] [--out runs/bench_biography]

Writes the tables as CSV into ``--out`` and prints them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

logger = logging.getLogger("bench_biography")

DIP_WINDOW = 200
STOP_TARGET = 0.90


@dataclass(frozen=True)
class BenchConfig:
    """Everything that defines a benchmark run (written to ``config.json``)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    task0_steps: int = 300
    task0_lr: float = 3e-4
    task1_steps: int = 400
    task1_lr: float = 3e-4
    batch_size: int = 32
    freeze_ks: tuple[int, ...] = (0, 1, 2, 3)
    replay_fraction: float = 0.1
    ewc_lambdas: tuple[float, ...] = (1e5, 1e6, 1e7)
    dense_every: int = 10
    dense_until: int = DIP_WINDOW
    sparse_every: int = 100
    stop_check_every: int = 10
    early_stop: float = STOP_TARGET
    gp_window: tuple[int, int] = (100, 150)
    gp_rule: str = "exact"


def _setup_worker() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(processName)s %(name)s %(message)s")


def _recipe(config: BenchConfig):
    """The library's Biography recipe with this run's settings."""
    from spurious_diag.biography.recipe import BiographyRecipe

    return BiographyRecipe(task0_steps=config.task0_steps, task0_lr=config.task0_lr, task1_steps=config.task1_steps,
                           task1_lr=config.task1_lr, batch_size=config.batch_size, early_stop=config.early_stop,
                           dip_window=config.dense_until, dense_every=config.dense_every,
                           sparse_every=config.sparse_every, stop_check_every=config.stop_check_every)


def _load(task0_dir: str):
    from transformers import LlamaForCausalLM

    from spurious_diag.biography.pretrain import load_base_model
    from spurious_diag.biography.tasks import biography_tasks

    base = load_base_model()
    model = LlamaForCausalLM.from_pretrained(task0_dir, local_files_only=True).eval()
    return model, base.tokenizer, biography_tasks(base.scenario())


def fisher_job(task0_dir: str, fisher_path: str, batch_size: int) -> dict[str, Any]:
    """Worker: EWC's Fisher of Task 0's training data at the end of Task 0 (the paper's: batch-size-weighted
    squared batch-mean gradients, in training batches), saved to a file."""
    _setup_worker()
    from spurious_diag.continual.ewc import batch_fisher, save_fisher

    started = time.perf_counter()
    model, tokenizer, tasks = _load(task0_dir)
    fisher = batch_fisher(model, tokenizer, tasks[0].train, batch_size=batch_size, source=tasks[0].name)
    save_fisher(fisher, fisher_path)
    return {"n_examples": fisher.n_examples, "sum": fisher.total(), "seconds": time.perf_counter() - started}


def run_job(task0_dir: str, method_label: str, seed: int, config: BenchConfig,
            fisher: Optional[tuple[str, int]] = None) -> dict[str, Any]:
    """Worker: Task 1 from the Task 0 model with one method and seed; returns its tables."""
    _setup_worker()
    from spurious_diag.biography.tasks import train_task1
    from spurious_diag.continual.ewc import load_fisher
    from spurious_diag.continual.methods import parse_method
    from spurious_diag.continual.tables import accuracy_matrix, attribute_table, backward_transfer, run_summary

    started = time.perf_counter()
    model, tokenizer, tasks = _load(task0_dir)
    method = parse_method(method_label)
    terms = [load_fisher(fisher[0])] if fisher is not None else []
    from spurious_diag.continual.preliminary import PreliminaryRuns

    result = train_task1(model, tokenizer, tasks, method, seed=seed, recipe=_recipe(config), fisher=terms,
                         projection=PreliminaryRuns(*config.gp_window, rule=config.gp_rule))
    matrices = []
    for at in ("early_stop", "end"):
        matrix = accuracy_matrix(result, at=at)
        long = matrix.reset_index().melt(id_vars="after", var_name="task", value_name="exact_match")
        matrices.append(long.assign(method=method.label, seed=seed, at=at,
                                    backward_transfer=backward_transfer(matrix)))
    summary = run_summary(result, dip_window=config.dense_until)
    check = result.frozen_checks.get(1)
    summary["frozen_bit_identical"] = check.ok if check is not None else math.nan
    summary["seconds"] = time.perf_counter() - started
    return {"summary": summary, "curve": result.curve, "per_attribute": result.per_attribute,
            "points": result.points, "matrices": matrices,
            "attributes_at_stop": attribute_table(result, point="early_stop"),
            "frozen": None if check is None else
            f"{len(check.identical)} frozen tensors bit-identical, {len(check.changed)} changed"}


# ----------------------------------------------------------------------------- tables

def _fmt(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "   n/a     "
    std_text = "   " if std is None or math.isnan(std) else f"{std:.2f}"[1:]
    return f"{mean:.3f}±{std_text}"


def _method_table(means, labels: list[str], first: str) -> str:
    import pandas as pd

    rows = []
    for label in labels:
        m = means[means["method"] == label]
        if m.empty:
            continue
        m = m.iloc[0]
        row = {first: label}
        for task, col in (("T0", "task0_test"), ("T1", "task1_train")):
            for point in ("dip", "stop", "end"):
                row[f"{task} {point}"] = _fmt(m[f"{col}_{point}_mean"], m[f"{col}_{point}_std"])
        row["T0 val stop"] = _fmt(m["task0_val_stop_mean"], m["task0_val_stop_std"])
        row["dip step"] = f"{m['dip_step_mean']:.0f}"
        row["stop step"] = f"{m['stop_step_mean']:.0f}±{m['stop_step_std']:.0f}"
        row["reached"] = f"{m['stop_reached_mean']:.0%}"
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False)


def choose_k(means, ks: tuple[int, ...]) -> tuple[Optional[int], str]:
    """k with the best mean Task 0 *validation* exact match at the early-stop point, among the k
    whose Task 1 reached the target in every seed (if none did: among all k)."""
    from spurious_diag.continual.methods import Method

    rows = means[means["method"].isin([Method.freeze(k).label for k in ks])]
    if rows.empty:
        return None, "no Freeze(k) run"
    eligible = rows[rows["stop_reached_mean"] >= 1.0]
    why = "Task 1 reached the target in every seed"
    if eligible.empty:
        eligible, why = rows, "no k reached the Task 1 target in every seed; chose among all"
    best = eligible.loc[eligible["task0_val_stop_mean"].idxmax()]
    return int(best["method"][len("Freeze("):-1]), f"max Task 0 validation exact match at the early-stop point ({why})"


def targets_table(means, k: Optional[int]) -> list[dict[str, Any]]:
    """The Biography targets (:func:`spurious_diag.biography.recipe.check_targets`) on the means over seeds."""
    from spurious_diag.biography.recipe import check_targets

    def row(label: str) -> dict[str, float]:
        found = means[means["method"] == label]
        if found.empty:
            return {}
        return {c[: -len("_mean")]: float(v) for c, v in found.iloc[0].items() if str(c).endswith("_mean")}

    rows = check_targets(row("SEQ"), row(f"Freeze({k})") if k is not None else {})
    for r in rows:
        r["target"] = r["target"].replace("Freeze(k)", f"Freeze({k})")
    return rows


# ----------------------------------------------------------------------------- main

def _train_task0(config: BenchConfig, task0_dir: str):
    import torch

    from spurious_diag.biography.pretrain import load_base_model
    from spurious_diag.biography.tasks import biography_tasks, train_task0

    torch.set_num_threads(1)
    base = load_base_model()
    result = train_task0(base.model, base.tokenizer, biography_tasks(base.scenario()), _recipe(config))
    base.model.save_pretrained(task0_dir, safe_serialization=True)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/bench_biography", help="output directory for the CSV tables")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(BenchConfig.seeds))
    parser.add_argument("--task1-steps", type=int, default=BenchConfig.task1_steps)
    parser.add_argument("--task1-lr", type=float, default=BenchConfig.task1_lr)
    parser.add_argument("--freeze", type=int, nargs="*", default=list(BenchConfig.freeze_ks))
    parser.add_argument("--replay", type=float, default=BenchConfig.replay_fraction)
    parser.add_argument("--ewc", type=float, nargs="*", default=list(BenchConfig.ewc_lambdas))
    parser.add_argument("--no-replay", action="store_true")
    parser.add_argument("--extra", nargs="*", default=[], metavar="METHOD",
                        help="more methods to run, e.g. GP 'LAMOL(0.25)' 'MIX(0.1)' (LAMOL generates 0.2 "
                             "pseudo-samples per record)")
    parser.add_argument("--gp-window", type=int, nargs=2, default=list(BenchConfig.gp_window), metavar=("EARLY", "LATE"),
                        help="GP's preliminary runs: D = weights at step LATE - at step EARLY (default 100 150)")
    parser.add_argument("--gp-rule", choices=("exact", "official"), default=BenchConfig.gp_rule,
                        help="GP's projection: exact, or the paper code's g - D*cos (default exact)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress of every run")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    import pandas as pd

    from spurious_diag.continual.methods import Method, parse_method
    from spurious_diag.continual.tables import accuracy_matrix, mean_over_seeds
    from spurious_diag.report.common import write_tables

    config = BenchConfig(seeds=tuple(args.seeds), task1_steps=args.task1_steps, task1_lr=args.task1_lr,
                         freeze_ks=tuple(args.freeze), replay_fraction=args.replay, ewc_lambdas=tuple(args.ewc),
                         gp_window=tuple(args.gp_window), gp_rule=args.gp_rule)
    started = time.perf_counter()
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="bench-biography-") as scratch:
        task0_dir = os.path.join(scratch, "task0")
        fisher_path = os.path.join(scratch, "fisher_task0.safetensors")
        task0 = _train_task0(config, task0_dir)
        task0_R = accuracy_matrix(task0)
        logger.info("Task 0 done in %.0f s: held-out %.3f, validation %.3f", time.perf_counter() - started,
                    task0_R.loc["task0", "task0"],
                    task0.curve.query("eval_task == 'task0' and eval_set == 'val'")["exact_match"].iloc[-1])

        labels = [Method.seq().label, *[Method.freeze(k).label for k in config.freeze_ks]]
        if not args.no_replay:
            labels.append(Method.replay(config.replay_fraction).label)
        labels.extend(parse_method(label).label for label in args.extra)
        ewc_labels = [Method.ewc(lam).label for lam in config.ewc_lambdas]
        jobs: dict[Future, tuple[str, int]] = {}
        results: list[dict[str, Any]] = []
        fisher_info: dict[str, Any] = {}
        # Jobs wait here and enter the pool one at a time, so the EWC runs (the longest, submitted
        # once the Fisher exists) can go first and short runs fill the end.
        longest_first = [*(Method.freeze(k).label for k in sorted(config.freeze_ks, reverse=True)),
                         *(label for label in labels if not label.startswith("Freeze"))]
        pending: list[tuple[str, int, Optional[tuple[str, int]]]] = [
            (label, seed, None) for label in longest_first for seed in config.seeds]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=_setup_worker) as pool:
            if ewc_labels:
                jobs[pool.submit(fisher_job, task0_dir, fisher_path, config.batch_size)] = ("fisher", -1)
            while jobs or pending:
                while pending and len(jobs) < args.jobs:
                    label, seed, fisher = pending.pop(0)
                    jobs[pool.submit(run_job, task0_dir, label, seed, config, fisher)] = (label, seed)
                done, _ = wait(list(jobs), return_when=FIRST_COMPLETED)
                for future in done:
                    label, seed = jobs.pop(future)
                    value = future.result()
                    if label == "fisher":
                        fisher_info = value
                        logger.info("Fisher of Task 0: sum %.4g over %d examples in %.0f s", value["sum"],
                                    value["n_examples"], value["seconds"])
                        pending[:0] = [(ewc, s, (fisher_path, value["n_examples"]))
                                       for ewc in ewc_labels for s in config.seeds]
                        continue
                    results.append(value)
                    row = value["summary"].iloc[0]
                    logger.info("[%.0f s] %s seed %d: Task 0 %.3f (dip) %.3f (stop at %d) %.3f (end); "
                                "Task 1 %.3f (stop) %.3f (end)%s", time.perf_counter() - started, label, seed,
                                row["task0_test_dip"], row["task0_test_stop"], row["stop_step"],
                                row["task0_test_end"], row["task1_train_stop"], row["task1_train_end"],
                                f"; {value['frozen']}" if value["frozen"] else "")
    wall = time.perf_counter() - started

    summaries = pd.concat([r["summary"] for r in results], ignore_index=True)
    all_labels = labels + ewc_labels
    summaries["order"] = summaries["method"].map({m: i for i, m in enumerate(all_labels)})
    summaries = summaries.sort_values(["order", "seed"]).drop(columns="order").reset_index(drop=True)
    means = mean_over_seeds(summaries)
    k, why = choose_k(means, config.freeze_ks)
    targets = targets_table(means, k)
    matrices = pd.concat([m for r in results for m in r["matrices"]], ignore_index=True)
    attributes = pd.concat([r["attributes_at_stop"] for r in results], ignore_index=True)
    attribute_means = (attributes.groupby(["method", "eval_task", "eval_set", "attribute"], sort=False)["exact_match"]
                       .agg(["mean", "std"]).reset_index())
    bwt = (matrices.drop_duplicates(["method", "seed", "at"])[["method", "seed", "at", "backward_transfer"]]
           .reset_index(drop=True))

    write_tables(out, {
        "runs": summaries,
        "methods": means,
        "targets": pd.DataFrame(targets),
        "curve": pd.concat([r["curve"] for r in results], ignore_index=True),
        "per_attribute": pd.concat([r["per_attribute"] for r in results], ignore_index=True),
        "attributes_at_stop": attribute_means,
        "points": pd.concat([r["points"] for r in results], ignore_index=True),
        "accuracy_matrix": matrices.drop(columns="backward_transfer"),
        "backward_transfer": bwt,
        "task0_curve": task0.curve,
    })
    (out / "config.json").write_text(json.dumps({**asdict(config), "jobs": args.jobs, "chosen_k": k,
                                                 "chosen_k_rule": why, "fisher": fisher_info,
                                                 "wall_seconds": wall}, indent=2) + "\n", encoding="utf-8")

    print(f"Biography benchmark: shipped base (4 blocks) -> Task 0 ({config.task0_steps} steps, lr {config.task0_lr:g}) "
          f"-> Task 1 ({config.task1_steps} steps, lr {config.task1_lr:g}, batch {config.batch_size}); "
          f"seeds {list(config.seeds)} of the Task 1 order; early stop at Task 1 >= {config.early_stop:.2f}; "
          f"dip = min Task 0 test in steps 1..{config.dense_until}")
    print(f"Task 0 after Task 0: test {task0_R.loc['task0', 'task0']:.3f}")
    print("\nFreeze(k) sweep (mean±std over seeds; T0 = Task 0 held-out test, T1 = Task 1):")
    print(_method_table(means, [Method.freeze(k_).label for k_ in config.freeze_ks], "method"))
    print(f"chosen k = {k}: {why}")
    print("\nSEQ and the other methods:")
    print(_method_table(means, ["SEQ", *[label for label in all_labels if not label.startswith(("SEQ", "Freeze"))]],
                        "method"))
    bwt_means = bwt.groupby(["method", "at"], sort=False)["backward_transfer"].mean().unstack("at")
    print("\nBackward transfer (mean over seeds):")
    print(bwt_means.reindex(all_labels).round(3).to_string())
    task0_attributes = attribute_means.query("eval_task == 'task0' and eval_set == 'test'")
    print("\nTask 0 test exact match per attribute at the early-stop point (mean over seeds):")
    print(task0_attributes.pivot(index="attribute", columns="method", values="mean")
          .reindex(columns=[label for label in all_labels if label in set(task0_attributes["method"])])
          .reindex(list(dict.fromkeys(task0_attributes["attribute"]))).round(3).to_string())
    print("\nTargets (means over seeds):")
    for t in targets:
        print(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']} >= {t['threshold']:+.2f}: {t['value']:+.3f}")
    print(f"\nwall time {wall:.0f} s with {args.jobs} jobs; tables in {out}/")
    return 0 if all(t["pass"] for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
