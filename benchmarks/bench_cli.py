"""CLI start-up times: ``spurious-diag --help``, each subcommand's ``--help`` and ``layers``, next to Python's own.

    python benchmarks/bench_cli.py [--rounds 5] [--json cli_times.json]

Every command runs in a fresh subprocess (HF_HUB_OFFLINE=1, OMP_NUM_THREADS=1), interleaved
over the rounds so that load on the machine hits all of them alike; the table gives the
median and min wall time of each against the issue's targets: ``--help`` <= 1 s, each
subcommand's ``--help`` <= 3 s, ``layers`` on the shipped Biography base model <= 4 s.
``python -c pass`` and ``python -c "import torch"`` are the references: nothing can start
faster than the first, and a command that imports torch cannot beat the second. The
subcommands are read from ``spurious-diag --help``, not listed here. A benchmark, not a
test: it always exits 0 and ends with "all targets met" or the list of those missed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false"}
TOP_HELP_S, SUB_HELP_S, LAYERS_S = 1.0, 3.0, 4.0


def cli_argv() -> list[str]:
    """The console script of this interpreter's environment (else the first on PATH), else ``python -m``."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    script = shutil.which("spurious-diag", path=path)
    return [script] if script else [sys.executable, "-m", "spurious_diag"]


def shipped_model_dir() -> str:
    """``spurious_diag/biography/data/base``, found without importing spurious_diag here."""
    spec = importlib.util.find_spec("spurious_diag")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("spurious_diag is not installed")
    return os.path.join(next(iter(spec.submodule_search_locations)), "biography", "data", "base")


def subcommands(cli: list[str]) -> list[str]:
    """Subcommand names parsed from ``spurious-diag --help`` (argparse's ``{a,b}`` or its indented list)."""
    done = subprocess.run([*cli, "--help"], capture_output=True, text=True, env=ENV, check=False)
    if done.returncode:  # still time the rest: the --help row then fails on its exit code
        print(f"`{' '.join(cli)} --help` exited {done.returncode}; no subcommands to time:\n"
              + "\n".join(done.stderr.strip().splitlines()[-3:]), file=sys.stderr)
        return []
    braces = re.search(r"\{([\w-]+(?:,[\w-]+)+)\}", done.stdout)
    if braces:
        return braces.group(1).split(",")
    section = done.stdout.split("positional arguments:", 1)[-1].split("\n\n", 1)[0]
    return re.findall(r"^ {4}([\w-]+)(?: {2,}|$)", section, flags=re.MULTILINE)


def run_once(argv: list[str], timeout: float) -> tuple[float, int]:
    started = time.perf_counter()
    try:
        rc = subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = -9
    return time.perf_counter() - started, rc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before one command is killed")
    parser.add_argument("--json", metavar="PATH", help="write the measurements here")
    args = parser.parse_args()

    cli = cli_argv()
    model = shipped_model_dir()
    names = subcommands(cli)  # also warms the page cache for the CLI's imports
    subprocess.run([sys.executable, "-c", "import torch"], env=ENV, check=True)  # and for torch's
    name = "spurious-diag"
    cases: list[tuple[str, list[str], float | None]] = [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ('python -c "import torch"', [sys.executable, "-c", "import torch"], None),
        (f"{name} --help", [*cli, "--help"], TOP_HELP_S),
        *[(f"{name} {c} --help", [*cli, c, "--help"], SUB_HELP_S) for c in names],
        (f"{name} layers <shipped base>", [*cli, "layers", model], LAYERS_S),
    ]
    print(f"cli: {' '.join(cli)}\nshipped model: {model}\n{args.rounds} rounds, interleaved, fresh processes, "
          f"OMP_NUM_THREADS=1, HF_HUB_OFFLINE=1, {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}")

    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    codes: dict[str, list[int]] = {label: [] for label, _, _ in cases}
    for r in range(args.rounds):
        for label, argv, _ in cases[r % len(cases):] + cases[: r % len(cases)]:  # rotate the order each round
            seconds, rc = run_once(argv, args.timeout)
            times[label].append(seconds)
            codes[label].append(rc)
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    torch_median = statistics.median(times['python -c "import torch"'])
    width = max(len(label) for label, _, _ in cases)
    print(f"\n{'command':<{width}}  {'median s':>8}  {'min s':>7}  {'target s':>8}  {'':<6}  {'/ import torch':>14}")
    rows, missed = [], []
    for label, argv, target in cases:
        med, low = statistics.median(times[label]), min(times[label])
        failed_runs = sum(rc != 0 for rc in codes[label])
        ok = None if target is None else (med <= target and not failed_runs)
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        note = f"  ({failed_runs} run(s) exited non-zero: {sorted(set(codes[label]))})" if failed_runs else ""
        tgt = "-" if target is None else f"{target:.1f}"
        print(f"{label:<{width}}  {med:>8.3f}  {low:>7.3f}  {tgt:>8}  {verdict:<6}  {med / torch_median:>13.2f}x{note}")
        if ok is False:
            missed.append(f"{label} ({med:.2f} s > {target:.1f} s)" if not failed_runs else f"{label} (exit codes)")
        rows.append({"command": label, "argv": argv, "target_s": target, "times_s": times[label],
                     "returncodes": codes[label], "median_s": med, "min_s": low, "pass": ok,
                     "median_over_import_torch": med / torch_median})
    if not names:
        missed.append("no subcommands found in `spurious-diag --help`")
    print("all targets met" if not missed else "targets not met: " + "; ".join(missed))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"cli": cli, "shipped_model": model, "rounds": args.rounds, "cpu_count": os.cpu_count(),
                       "python": sys.version, "env": {k: ENV[k] for k in ("HF_HUB_OFFLINE", "OMP_NUM_THREADS")},
                       "subcommands": names, "results": rows, "all_targets_met": not missed}, f, indent=2)
        print(f"measurements written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
