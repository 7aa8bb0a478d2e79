"""The main job's wall time on this machine: ``spurious-diag demo`` from a fresh process, timed.

    python benchmarks/bench_demo.py [--out runs/demo] [--jobs 2]

Prints the wall time against the 15-minute budget, the per-stage times the demo records, and
the targets from its ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BUDGET_S = 15 * 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("runs", "demo"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    command = [sys.executable, "-m", "spurious_diag", "demo", "--out", args.out, "--overwrite", "--jobs", str(args.jobs)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    summary = json.loads(open(os.path.join(args.out, "summary.json"), encoding="utf-8").read())
    print(f"\nspurious-diag demo: {wall:.0f} s wall ({wall / BUDGET_S:.2f} of the 15-minute budget) on "
          f"{os.cpu_count()} CPU cores")
    print("stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["timing"].items()))
    for target in summary["targets"]:
        print(f"  {'PASS' if target['pass'] else 'FAIL'}  {target['target']}: {target['value']:+.3f} "
              f"(threshold {target['threshold']:+.2f})")
    rec = summary["recovery"]
    print(f"verdict {summary['diagnosis']['verdict']}; recommended Freeze({summary['diagnosis']['recommended_k']}); "
          f"best k on validation {summary['best_k_validation']}; recovery fraction {rec['fraction']:.3f} at n = "
          f"{rec['best_n']} (control {rec['control_fraction']:.3f})")
    return 0 if wall <= BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
