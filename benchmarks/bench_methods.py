"""The paper's competitors against Freeze, after one new task and after three: ``spurious-diag compare`` twice.

Part 1 (N = 1): every method (SEQ, Freeze, REPLAY(0.1), EWC, Task Vector, LAMOL(0.25), GP), 3 seeds,
each free setting chosen on the Task 0 validation people (``compare``'s defaults).
Part 2 (N = 3): SEQ, Freeze and the two best competitors of part 1, at the settings part 1 chose
(Task Vector re-chooses its θ_k, which is a step of the last task), 3 seeds. Every evaluation scores
four tasks' sets there, so Task 0 is evaluated every 50 steps in each new task's dip window (every 10
in part 1) and the part fits its hour; the early-stop checks stay every 10 steps.

Each part is the CLI, run as a subprocess and timed from the outside (start-up included). The
"two best competitors": the most Task 0 at early stop (mean over seeds) among the methods whose
newest task at early stop is within 10 points of SEQ's, then the others by the same measure.

    python benchmarks/bench_methods.py [--jobs 2] [--out runs/bench_methods] [--part 1|2|all|print] [--resume]

Prints each part's table (means ± s.d.), its wall time, and whether the paper's claim holds; writes
``bench_methods.json`` beside the two comparisons.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

BUDGET_S = 3600  # each part, on the 2 cores
PART1_METHODS = "SEQ,Freeze,REPLAY(0.1),EWC,TaskVector,LAMOL(0.25),GP"


def _compare(out: Path, methods: str, tasks: int, seeds: str, jobs: int, resume: bool,
             extra: tuple[str, ...] = ()) -> float:
    command = [sys.executable, "-m", "spurious_diag", "compare", "--methods", methods, "--tasks", str(tasks),
               "--seeds", seeds, "--jobs", str(jobs), "--out", str(out), *extra]
    if resume and (out / "config.json").is_file():
        command.append("--resume")
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"compare failed (exit {completed.returncode})")
    return seconds


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def _pm(row: dict[str, Any], column: str) -> str:
    mean, std = row.get(f"{column}_mean"), row.get(f"{column}_std")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "   –       "
    return f"{100 * mean:5.1f} ± {100 * std:4.1f}" if std is not None else f"{100 * mean:5.1f}"


def _print_table(summary: dict[str, Any], title: str, seconds: float) -> None:
    print(f"\n== {title}: {seconds / 60:.1f} min wall (CLI, start-up included; budget {BUDGET_S // 60} min) ==")
    columns = ("task0_after", "task0_dip", "task0_stop", "task0_end", "task1_stop", "task1_end", "avg_acc", "bwt")
    print(f"{'method':<11}{'setting':<20}" + "".join(f"{c:>14}" for c in columns))
    for row in summary["means"]:
        print(f"{row['method']:<11}{str(row['setting'])[:19]:<20}" + "".join(f"{_pm(row, c):>14}" for c in columns))
    verdict = summary["claim"]
    print(f"claim: Freeze keeps the most Task 0 at early stop among methods within "
          f"{100 * verdict['tolerance']:.0f} points of SEQ's newest task: {verdict['holds']} "
          f"(best {verdict['best']}, margin {100 * verdict['margin']:+.1f} points; eligible "
          f"{ {m: round(100 * v, 1) for m, v in verdict['eligible'].items()} }, excluded "
          f"{ {m: round(100 * v, 1) for m, v in verdict['excluded'].items()} })")


def best_competitors(summary: dict[str, Any], count: int = 2) -> list[str]:
    """The ``count`` best competitors of part 1 as ``--methods`` items at their chosen settings."""
    verdict = summary["claim"]
    rows = [r for r in summary["means"] if r["method"] not in ("SEQ", "Freeze")]
    eligible = [r for r in rows if r["method"] in verdict["eligible"]]
    others = [r for r in rows if r["method"] not in verdict["eligible"]]
    ranked = (sorted(eligible, key=lambda r: -r["task0_stop_mean"])
              + sorted(others, key=lambda r: -r["task0_stop_mean"]))[:count]
    items = []
    for row in ranked:
        setting = str(row["setting"])
        if row["method"] == "TaskVector":  # keep α; its θ_k is a step of the last task, chosen again
            setting = setting.split("alpha=")[1]
        items.append(f"{row['method']}({setting})" if setting else row["method"])
    return items


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/bench_methods", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--part", choices=("1", "2", "all", "print"), default="all",
                        help="run part 1, part 2 or both; 'print' prints the finished parts' tables only")
    parser.add_argument("--resume", action="store_true", help="continue killed parts (finished runs are kept)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "bench_methods.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    part1 = args.out / "n1"
    if args.part in ("1", "all"):
        seconds = _compare(part1, PART1_METHODS, 1, args.seeds, args.jobs, args.resume)
        record["part1"] = {"methods": PART1_METHODS, "seconds": seconds, "out": str(part1)}
        record_path.write_text(json.dumps(record, indent=2))
    if args.part in ("2", "all"):
        first = _summary(part1)
        freeze = next(r for r in first["means"] if r["method"] == "Freeze")
        methods = ",".join(["SEQ", f"Freeze({freeze['setting']})", *best_competitors(first)])
        part2 = args.out / "n3"
        seconds = _compare(part2, methods, 3, args.seeds, args.jobs, args.resume, ("--dense-every", "50"))
        record["part2"] = {"methods": methods, "seconds": seconds, "out": str(part2)}
        record_path.write_text(json.dumps(record, indent=2))
    for key, title in (("part1", "N = 1, every method"), ("part2", "N = 3, SEQ, Freeze and the two best")):
        if key in record and (Path(record[key]["out"]) / "summary.json").is_file():
            _print_table(_summary(Path(record[key]["out"])), title, record[key]["seconds"])
            if record[key]["seconds"] > BUDGET_S:
                print(f"over budget: {record[key]['seconds'] / 60:.1f} min > {BUDGET_S // 60} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
