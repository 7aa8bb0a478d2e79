"""The probes on the Biography benchmark: is SEQ's forgetting spurious, at its dip and at the end?

For each seed of the Task 1 data order: SEQ Task 1 from the Task 0 model (the recipe of
``spurious_diag.biography.recipe``, as in ``bench_biography.py``), with its checkpoint chain;
then, on the SEQ model at its dip (lowest Task 0 accuracy in the first 200 steps) and at the
end of Task 1, :func:`spurious_diag.probes.diagnose` with the recovery, format and grafting
probes. The recovery learning rate and steps are chosen per seed on the Task 0 *validation*
people (largest margin over the control at n = 100), then used for both the model and the
never-aligned control (the shipped base) on the *test* people.

Targets (means over seeds, at the dip):
  1. recovery with <= 100 examples restores >= 50% of the lost Task 0 accuracy;
  2. its accuracy exceeds the control's by >= 20 points;
  3. grafting the bottom k blocks restores more than grafting the top k (mean over k = 1..L-1);
  4. the pretraining-format accuracy stays >= 80% of its value before Task 1;
  5. the recommended freeze depth scores, on Task 0 at the early stop of Task 1, within 5 points
     of the sweep's best k chosen on validation (read from bench_biography.py's methods.csv).

    python benchmarks/bench_probes.py [--sweep runs/bench_biography/methods.csv] [--jobs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

logger = logging.getLogger("bench_probes")

PROBES = ("recovery", "format", "grafting")
NS = (10, 50, 100)


def _setup_worker() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(processName)s %(name)s %(message)s")


def _point_row(diagnosis: Any, seed: int, point: str, step: int) -> dict[str, Any]:
    """The headline numbers of one diagnosis."""
    e = diagnosis.evidence
    rec = diagnosis.frames["recovery"]
    forgot = rec[(rec["model"] == "forgot") & (rec["n"] > 0)].set_index("n")
    control = rec[(rec["model"] == "control") & (rec["n"] > 0)].set_index("n")
    row: dict[str, Any] = {"seed": seed, "point": point, "step": step, "acc_before": e["acc_before"],
                           "acc_after": e["acc_after"], "verdict": diagnosis.verdict,
                           "recommended_k": diagnosis.recommendation.k}
    for n in forgot.index:
        row[f"rec_acc_n{n}"] = float(forgot.loc[n, "acc"])
        row[f"rec_fraction_n{n}"] = float(forgot.loc[n, "recovery_fraction"])
        row[f"control_acc_n{n}"] = float(control.loc[n, "acc"])
    best_n = int(forgot["recovery_fraction"].idxmax())
    row.update({"best_n": best_n, "rec_fraction_best": row[f"rec_fraction_n{best_n}"],
                "rec_margin_best": row[f"rec_acc_n{best_n}"] - row[f"control_acc_n{best_n}"]})
    row["pretraining_before"] = e["pretraining_format_before"]
    row["pretraining_after"] = e["pretraining_format_after"]
    row["pretraining_ratio"] = e["pretraining_format_after"] / e["pretraining_format_before"]
    row["task_format_after"] = e["task_format_after"]
    row["graft_bottom_minus_top"] = e.get("graft_bottom_minus_top", math.nan)
    graft = diagnosis.frames["grafting"]
    for _, g in graft[graft["status"] == "ok"].iterrows():
        row[f"graft_{g['arm']}_k{int(g['k'])}"] = float(g["old_acc"])
    return row


def seed_job(task0_dir: str, seed: int, work: str) -> dict[str, Any]:
    """Worker: SEQ Task 1 for one seed, then the diagnosis at its dip and at its end."""
    _setup_worker()
    from transformers import LlamaForCausalLM

    from spurious_diag.biography.pretrain import load_base_model
    from spurious_diag.biography.demo_config import DEFAULT_RECOVERY_CANDIDATES
    from spurious_diag.biography.recipe import BiographyRecipe, probe_inputs
    from spurious_diag.biography.tasks import biography_tasks, train_task1
    from spurious_diag.continual.methods import Method
    from spurious_diag.continual.tables import run_summary
    from spurious_diag.probes.diagnose import diagnose
    from spurious_diag.probes.options import DiagnoseOptions
    from spurious_diag.probes.recovery import select_recovery_settings

    started = time.perf_counter()
    recipe = BiographyRecipe()
    base = load_base_model()
    data = base.scenario()
    inputs = probe_inputs(data)
    model = LlamaForCausalLM.from_pretrained(task0_dir, local_files_only=True).eval()
    chain = Path(work) / f"seed{seed}"
    result = train_task1(model, base.tokenizer, biography_tasks(data), Method.seq(), seed=seed, recipe=recipe,
                         checkpoint_dir=chain)
    summary = run_summary(result, dip_window=recipe.dip_window).iloc[0]
    dip_step, end_step = int(summary["dip_step"]), int(summary["end_step"])
    models = {"dip": LlamaForCausalLM.from_pretrained(chain / "task1" / f"checkpoint-{dip_step}",
                                                      local_files_only=True).eval(),
              "end": model}
    control = load_base_model().model
    chosen, choice = select_recovery_settings(models["dip"], control, base.tokenizer, inputs.recovery_pool,
                                              inputs.validation, DEFAULT_RECOVERY_CANDIDATES, n=max(NS))
    recovery = dataclasses.replace(chosen, ns=NS, seed=seed)
    before = LlamaForCausalLM.from_pretrained(task0_dir, local_files_only=True).eval()
    rows = []
    for point, step in (("dip", dip_step), ("end", end_step)):
        diagnosis = diagnose(before, models[point], inputs.held_out, base=control, tokenizer=base.tokenizer,
                             new_task_records=inputs.new_task, pretraining_records=inputs.pretraining,
                             recovery_records=inputs.recovery_pool,
                             options=DiagnoseOptions(probes=PROBES, recovery=recovery, seed=seed))
        rows.append(_point_row(diagnosis, seed, point, step))
    return {"rows": rows, "choice": choice.assign(seed=seed), "seconds": time.perf_counter() - started}


def _train_task0(path: str) -> float:
    import torch

    from spurious_diag.biography.pretrain import load_base_model
    from spurious_diag.biography.tasks import biography_tasks, train_task0

    torch.set_num_threads(1)
    base = load_base_model()
    result = train_task0(base.model, base.tokenizer, biography_tasks(base.scenario()))
    base.model.save_pretrained(path)
    curve = result.curve
    last = curve[(curve["eval_task"] == "task0") & (curve["eval_set"] == "test")]
    return float(last.loc[last["step"].idxmax(), "exact_match"])


def _sweep_check(sweep_path: Optional[str], recommended: Optional[int]) -> tuple[str, float, bool]:
    """Target 5 from the Freeze(k) sweep of bench_biography.py (its methods.csv)."""
    import pandas as pd

    if not sweep_path or not os.path.isfile(sweep_path):
        return f"no sweep table at {sweep_path} (run benchmarks/bench_biography.py first)", math.nan, False
    means = pd.read_csv(sweep_path)
    freeze = means[means["method"].str.startswith("Freeze(")].copy()
    freeze["k"] = freeze["method"].str.extract(r"Freeze\((\d+)\)")[0].astype(int)
    eligible = freeze[freeze["stop_reached_mean"] >= 1.0]
    eligible = eligible if not eligible.empty else freeze
    best = eligible.loc[eligible["task0_val_stop_mean"].idxmax()]
    rec = freeze[freeze["k"] == recommended]
    if rec.empty:
        return f"recommended k={recommended} not in the sweep", math.nan, False
    gap = float(rec["task0_test_stop_mean"].iloc[0] - best["task0_test_stop_mean"])
    text = (f"recommended Freeze({recommended}) Task 0 at early stop {rec['task0_test_stop_mean'].iloc[0]:.3f} vs "
            f"best on validation Freeze({int(best['k'])}) {best['task0_test_stop_mean']:.3f}")
    return text, gap, abs(gap) <= 0.05 or gap > 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/bench_probes", help="output directory for the CSV tables")
    parser.add_argument("--sweep", default="runs/bench_biography/methods.csv",
                        help="bench_biography.py's methods.csv (the Freeze(k) sweep)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    import pandas as pd

    from spurious_diag.report.common import write_tables

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-probes-") as work:
        task0_dir = os.path.join(work, "task0")
        acc = _train_task0(task0_dir)
        logger.info("Task 0 trained: held-out %.3f", acc)
        results = []
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = [pool.submit(seed_job, task0_dir, seed, work) for seed in args.seeds]
            for future in as_completed(futures):
                results.append(future.result())
                logger.info("[%.0f s] seed %d done in %.0f s", time.perf_counter() - started,
                            results[-1]["rows"][0]["seed"], results[-1]["seconds"])
    rows = pd.DataFrame([row for r in results for row in r["rows"]]).sort_values(["point", "seed"])
    choices = pd.concat([r["choice"] for r in results], ignore_index=True)
    numeric = rows.drop(columns=["seed", "verdict", "recommended_k"]).groupby("point").mean(numeric_only=True)
    write_tables(args.out, {"points": rows, "recovery_choice": choices, "means": numeric.reset_index()})

    pd.set_option("display.width", 200)
    print(f"Probes on SEQ (Biography, seeds {args.seeds}); recovery settings chosen on validation people:")
    print(choices.round(3).to_string(index=False, formatters={"lr": "{:g}".format}))
    cols = ["seed", "point", "step", "acc_before", "acc_after", "best_n", "rec_fraction_best", "rec_margin_best",
            *[f"rec_acc_n{n}" for n in NS], *[f"control_acc_n{n}" for n in NS], "pretraining_before",
            "pretraining_after", "pretraining_ratio", "task_format_after", "graft_bottom_minus_top", "verdict",
            "recommended_k"]
    print("\nPer seed:")
    print(rows[[c for c in cols if c in rows]].round(3).to_string(index=False))
    graft_cols = sorted(c for c in rows if c.startswith("graft_") and c != "graft_bottom_minus_top")
    print("\nGrafting (Task 0 held-out exact match of the SEQ model with blocks grafted from the Task 0 model), mean:")
    print(rows.groupby("point")[graft_cols].mean().round(3).T.to_string())
    print("\nMeans over seeds:")
    print(numeric[[c for c in cols if c in numeric]].round(3).T.to_string())

    dip = numeric.loc["dip"]
    recommended = rows[rows["point"] == "dip"]["recommended_k"].mode()
    k = int(recommended.iloc[0]) if len(recommended) and pd.notna(recommended.iloc[0]) else None
    sweep_text, sweep_gap, sweep_ok = _sweep_check(args.sweep, k)
    targets = [
        ("dip: recovery (<= 100 examples) restores >= 50% of the lost Task 0 accuracy", dip["rec_fraction_best"],
         dip["rec_fraction_best"] >= 0.5),
        ("dip: recovered accuracy - control's >= 0.20", dip["rec_margin_best"], dip["rec_margin_best"] >= 0.20),
        ("dip: grafting bottom k blocks - top k blocks > 0", dip["graft_bottom_minus_top"],
         dip["graft_bottom_minus_top"] > 0),
        ("dip: pretraining-format accuracy / before >= 0.80", dip["pretraining_ratio"], dip["pretraining_ratio"] >= 0.8),
        (f"recommended k (mode over seeds: {k}) within 5 points of the best k on validation; {sweep_text}",
         sweep_gap, sweep_ok),
    ]
    print("\nTargets (means over seeds):")
    for name, value, ok in targets:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value:+.3f}")
    write_tables(args.out, {"targets": pd.DataFrame([{"target": n, "value": v, "pass": bool(o)}
                                                     for n, v, o in targets])})
    print(f"\nwall time {time.perf_counter() - started:.0f} s with {args.jobs} jobs; tables in {args.out}/")
    return 0 if all(ok for _, _, ok in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
