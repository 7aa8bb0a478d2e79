"""The paper's depth on our Biography benchmark: SEQ against Freeze(k) at 4, 8 and 12 blocks.

The paper's model has 12 blocks and froze "7 layers" (the official code's substring match froze
blocks 0-6 and 10-11, so 9 of them; DESIGN.md §2c). Our 4-block model needs Freeze(1). Does the
best depth grow with the model, and does the cure still hold at the paper's depth?

For each depth L, the Biography base model of L blocks (hidden 128, the shipped model's scenario
and pretraining; 4 blocks is the shipped model, 8 and 12 are pretrained once and cached in
``benchmarks/.cache/bench_depth``, keyed by their manifest) goes through ``spurious-diag compare``
with ``SEQ`` and ``Freeze(k)`` for k over the candidates below (up to L − 1), 3 seeds of the Task 1
order. As ``compare`` does, k is chosen on seed 0's runs, on the Task 0 *validation* people: the
most Task 0 kept at the early-stop point among the k whose Task 1 there is within 10 points of
SEQ's. The chosen k then runs on every seed. Task 1 ends at its early-stop point (the first
evaluation where it reaches 0.90, or step 400 when it never does): the targets are read there and
at the dip, and nothing after the stop is needed.

Targets (means over seeds, exact match on the held-out Task 0 people):
  at 12 blocks, Freeze(validation-chosen k) >= SEQ + 10 points on Task 0 at early stop, with its
  Task 1 there within 10 points of SEQ's.

    python benchmarks/bench_depth.py [--depths 4,8,12] [--seeds 0,1,2] [--jobs 2] [--out runs/bench_depth]
                                     [--resume] [--quick]

Prints one table (the best k per depth, its gain over SEQ at the dip and at early stop, paired per
seed, mean ± s.d. and the standard error of the mean) and the wall time; writes ``depth.csv``,
``bench_depth.json`` and each depth's comparison (``L<depth>/``: ``compare``'s tables and report).
``--quick`` (a smoke test, ~3 min): bases of 2 and 3 blocks pretrained for a few steps, short tasks.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(__file__))

from _models import CACHE  # noqa: E402

logger = logging.getLogger("bench_depth")
T0 = time.time()

# Freeze(k) candidates per depth: every k at 4 blocks; at 8 and 12, the small k densely (the
# cure's k is 1 at 4 blocks), then the paper's 7 and L − 1.
DEPTH_KS: dict[int, tuple[int, ...]] = {4: (0, 1, 2, 3), 8: (0, 1, 2, 4, 7), 12: (0, 1, 2, 4, 7, 11)}
PAPER_K, PAPER_K_OFFICIAL, PAPER_LAYERS = 7, 9, 12
STOP_GAIN, TASK1_TOLERANCE = 0.10, 0.10


def stamp(message: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {message}", flush=True)


@dataclass(frozen=True)
class Plan:
    """What one run of the benchmark trains."""

    depths: tuple[int, ...]
    ks: dict[int, tuple[int, ...]]
    seeds: tuple[int, ...]
    recipe: Any  # BiographyRecipe
    pretraining: Any  # TrainSettings
    cache: Path


def full_plan(depths: Sequence[int], seeds: Sequence[int]) -> Plan:
    from spurious_diag.biography.defaults import PRETRAINING
    from spurious_diag.biography.recipe import BiographyRecipe

    ks = {d: DEPTH_KS.get(d, tuple(sorted({0, 1, 2, d // 2, d - 1}))) for d in depths}
    return Plan(tuple(depths), ks, tuple(seeds), BiographyRecipe(train_past_stop=False), PRETRAINING,
                CACHE / "bench_depth")


def quick_plan(out: Path) -> Plan:
    from spurious_diag.biography.recipe import BiographyRecipe
    from spurious_diag.training.settings import TrainSettings

    recipe = BiographyRecipe(task0_steps=30, task1_steps=40, dip_window=20, dense_every=10, sparse_every=20,
                             stop_check_every=10, checkpoint_every=10, train_past_stop=False)
    pretraining = TrainSettings(steps=60, lr=2e-3, batch_size=32, schedule="constant", warmup_steps=10,
                                logging_steps=20)
    return Plan((2, 3), {2: (0, 1), 3: (0, 1, 2)}, (0, 1), recipe, pretraining, out / "bases")


# --------------------------------------------------------------------------- bases

def _pretrain(depth: int, settings: Any, out_dir: str) -> str:
    """Pretrain and save the base of ``depth`` blocks (a worker process, one thread)."""
    import torch

    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.defaults import ModelShape
    from spurious_diag.biography.pretrain import pretrain_base_model, save_base_model

    torch.set_num_threads(1)
    base = pretrain_base_model(build_scenario(seed=0), settings, seed=0, shape=ModelShape(num_layers=depth))
    save_base_model(base, out_dir, overwrite=True)
    return out_dir


def _base_matches(directory: Path, depth: int, settings: Any) -> bool:
    """Whether ``directory`` holds the base of ``depth`` blocks pretrained with ``settings`` on the
    default scenario (the manifest's data hash, shape and settings)."""
    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.pretrain import read_base_manifest
    from spurious_diag.errors import SpuriousDiagError

    try:
        manifest = read_base_manifest(directory)
    except SpuriousDiagError:
        return False
    done = manifest["pretraining"]
    return (manifest["model"]["num_layers"] == depth and manifest["model"]["hidden_size"] == 128
            and manifest["scenario"]["sha256"] == build_scenario(seed=0).sha256
            and done["steps"] == settings.steps and done["lr"] == settings.lr
            and done["batch_size"] == settings.batch_size and done["schedule"] == settings.schedule)


def ensure_bases(plan: Plan, jobs: int) -> dict[int, Optional[str]]:
    """Each depth's base directory (None: the shipped one), pretraining the missing ones in parallel."""
    from spurious_diag.biography.defaults import PRETRAINING

    bases: dict[int, Optional[str]] = {}
    missing = []
    for depth in plan.depths:
        if depth == 4 and plan.pretraining == PRETRAINING:
            bases[depth] = None
            continue
        directory = plan.cache / f"base-{depth}"
        bases[depth] = str(directory)
        if not _base_matches(directory, depth, plan.pretraining):
            missing.append(depth)
    if missing:
        stamp(f"pretraining the bases of {missing} blocks ({plan.pretraining.steps} steps each, "
              f"{min(jobs, len(missing))} at a time)")
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(missing))), mp_context=context) as pool:
            list(pool.map(_pretrain, missing, [plan.pretraining] * len(missing), [bases[d] for d in missing]))
        stamp(f"pretrained in {time.perf_counter() - started:.0f} s")
    return bases


# --------------------------------------------------------------------------- comparisons

def run_depth(plan: Plan, depth: int, base: Optional[str], out: Path, jobs: int, resume: bool) -> Any:
    """``compare`` SEQ against Freeze(k) on the base of ``depth`` blocks; returns its result."""
    from spurious_diag.comparison import CompareConfig, run_comparison
    from spurious_diag.report.compare import write_comparison_report

    ks = "|".join(str(k) for k in plan.ks[depth])
    config = CompareConfig(methods=f"SEQ,Freeze({ks})", seeds=plan.seeds, recipe=plan.recipe, base_dir=base)
    resume = resume and (out / "config.json").is_file()
    result = run_comparison(config, out, jobs=jobs, resume=resume, overwrite=not resume, progress=False)
    write_comparison_report(result, out)
    return result


def _stats(values: Sequence[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "se": sd / math.sqrt(n) if n > 1 else math.nan}


def depth_row(depth: int, result: Any) -> dict[str, Any]:
    """One depth's line: the chosen k and its gains over SEQ, paired per seed."""
    methods = result.methods
    seq = methods[methods["method"] == "SEQ"].set_index("seed")
    freeze = methods[methods["method"] == "Freeze"].set_index("seed")
    k = int(freeze["setting"].iloc[0])
    row: dict[str, Any] = {"blocks": depth, "k": k, "k_over_blocks": k / depth, "seeds": len(seq),
                           "candidates": ",".join(str(c) for c in result.candidates.query("method == 'Freeze'")["setting"]),
                           "choice": result.choices["Freeze"].reason}
    for name, column in (("task0_after", "task0_after"), ("seq_dip", "task0_dip"), ("seq_stop", "task0_stop"),
                         ("seq_task1_stop", "task1_stop"), ("seq_stop_step", "stop_step")):
        row[name] = _stats(list(seq[column]))["mean"]
    for name, column in (("freeze_dip", "task0_dip"), ("freeze_stop", "task0_stop"),
                         ("freeze_task1_stop", "task1_stop"), ("freeze_stop_step", "stop_step")):
        row[name] = _stats(list(freeze[column]))["mean"]
    for name, column in (("dip_gain", "task0_dip"), ("stop_gain", "task0_stop"), ("task1_gap", "task1_stop")):
        stats = _stats([float(freeze.loc[s, column] - seq.loc[s, column]) for s in seq.index])
        row.update({name: stats["mean"], f"{name}_sd": stats["sd"], f"{name}_se": stats["se"]})
    # On seed 0 (where k was chosen): the k with the most held-out Task 0 at early stop among those
    # within the Task 1 tolerance, to show how far validation's choice is from the test's.
    cands = result.candidates.query("method == 'Freeze'")
    eligible = cands[cands["eligible"]]
    if not eligible.empty:
        best = eligible.loc[eligible["task0_stop"].idxmax()]
        row["test_best_k_seed0"] = int(best["setting"])
    return row


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print("\n== the best freeze depth per model depth (k chosen on validation people; Task 0 on held-out "
          "people, exact match in %, means over seeds; gains paired per seed, ± s.d., [s.e.]) ==")
    head = (f"{'blocks':>6} {'k':>3} {'k/L':>5} {'Task0 after':>11} {'SEQ dip':>8} {'Frz dip':>8} {'dip gain':>20} "
            f"{'SEQ stop':>9} {'Frz stop':>9} {'stop gain':>20} {'Task1 gap':>18} {'stop step':>11}")
    print(head)
    for r in rows:
        def pm(key: str) -> str:
            return f"{100 * r[key]:+5.1f} ± {100 * r[key + '_sd']:4.1f} [{100 * r[key + '_se']:3.1f}]"
        print(f"{r['blocks']:>6} {r['k']:>3} {r['k_over_blocks']:>5.2f} {100 * r['task0_after']:>11.1f} "
              f"{100 * r['seq_dip']:>8.1f} {100 * r['freeze_dip']:>8.1f} {pm('dip_gain'):>20} "
              f"{100 * r['seq_stop']:>9.1f} {100 * r['freeze_stop']:>9.1f} {pm('stop_gain'):>20} "
              f"{100 * r['task1_gap']:+6.1f} ± {100 * r['task1_gap_sd']:4.1f}   "
              f"{r['seq_stop_step']:>4.0f}/{r['freeze_stop_step']:<4.0f}")
    print(f"paper: 12 blocks, 'freeze 7 layers' (k/L = {PAPER_K / PAPER_LAYERS:.2f}; the official code's substring "
          f"match froze {PAPER_K_OFFICIAL}, k/L = {PAPER_K_OFFICIAL / PAPER_LAYERS:.2f})")
    for r in rows:
        print(f"  {r['blocks']} blocks: candidates k = {r['candidates']}; {r['choice']}"
              + (f"; the held-out people's best eligible k on seed 0: {r['test_best_k_seed0']}"
                 if "test_best_k_seed0" in r else ""))


def check_targets(rows: Sequence[dict[str, Any]], depth: int = 12) -> list[tuple[str, bool]]:
    row = next((r for r in rows if r["blocks"] == depth), None)
    if row is None:
        return []
    return [(f"{depth} blocks: Freeze({row['k']}) Task 0 at early stop >= SEQ + {100 * STOP_GAIN:.0f} points "
             f"({100 * row['stop_gain']:+.1f})", row["stop_gain"] >= STOP_GAIN),
            (f"{depth} blocks: its Task 1 at early stop within {100 * TASK1_TOLERANCE:.0f} points of SEQ's "
             f"({100 * row['task1_gap']:+.1f})", row["task1_gap"] >= -TASK1_TOLERANCE)]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", default="4,8,12", help="model depths (blocks), comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the Task 1 order (k is chosen on the first)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_depth"))
    parser.add_argument("--resume", action="store_true", help="continue killed comparisons (finished runs are kept)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny bases and tasks (~3 min)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    plan = (quick_plan(args.out) if args.quick
            else full_plan([int(d) for d in args.depths.split(",")], [int(s) for s in args.seeds.split(",")]))
    bases = ensure_bases(plan, args.jobs)
    rows, seconds = [], {}
    # The deepest first: its runs are the longest, and the shallow ones fill the end.
    for depth in sorted(plan.depths, reverse=True):
        started = time.perf_counter()
        stamp(f"{depth} blocks: SEQ and Freeze({'|'.join(map(str, plan.ks[depth]))}), seeds {list(plan.seeds)}")
        result = run_depth(plan, depth, bases[depth], args.out / f"L{depth}", args.jobs, args.resume)
        seconds[depth] = time.perf_counter() - started
        stamp(f"{depth} blocks done in {seconds[depth] / 60:.1f} min")
        rows.append(depth_row(depth, result))
    rows.sort(key=lambda r: r["blocks"])
    import pandas as pd

    pd.DataFrame(rows).to_csv(args.out / "depth.csv", index=False)
    print_table(rows)
    targets = [] if args.quick else check_targets(rows)
    for name, ok in targets:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    total = time.time() - T0
    print(f"wall time {total / 60:.1f} min (in-process, start-up included; comparisons "
          + ", ".join(f"{d} blocks {s / 60:.1f}" for d, s in sorted(seconds.items())) + " min)")
    record = {"quick": args.quick, "depths": list(plan.depths), "ks": {str(d): list(k) for d, k in plan.ks.items()},
              "seeds": list(plan.seeds), "recipe": plan.recipe.to_dict(), "seconds": total,
              "seconds_per_depth": {str(d): s for d, s in seconds.items()}, "rows": rows,
              "targets": [{"target": n, "pass": ok} for n, ok in targets]}
    (args.out / "bench_depth.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
