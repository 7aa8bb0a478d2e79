"""``spurious-diag compare --methods LIST --tasks N --seeds 0,1,2 --jobs J --out DIR [--resume]``: the
paper's continual-learning methods against each other on the Biography tasks."""

from __future__ import annotations

import argparse
import logging

from ..comparison.config import CompareConfig
from .app import _positive_int
from .options import add_options, add_out_flags, options_from_args

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare continual-learning methods (SEQ, Freeze, REPLAY, EWC, Task Vector, LAMOL, GP) on "
        "the Biography tasks",
        description="Task 0 from the shipped base model, then N new tasks with every method and seed. Each method's "
        "free setting is chosen on the Task 0 validation people (first seed's runs); writes methods.csv, "
        "accuracy_matrix.csv, candidates.csv, summary.json, report.md and figures/. N = 1 with the default methods: "
        "about 45 minutes with --jobs 2 on 2 CPU cores.")
    add_out_flags(p)
    p.add_argument("--resume", action="store_true",
                   help="continue a killed comparison in --out (same settings): finished runs are read back, not redone")
    p.add_argument("--jobs", type=_positive_int, default=2, metavar="J",
                   help="worker processes, one thread each (default 2; 1 runs everything in this process)")
    add_options(p, CompareConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..comparison.runner import run_comparison
    from ..errors import UsageError
    from ..report.compare import write_comparison_report

    config = options_from_args(CompareConfig, args)
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the comparison in --out; --overwrite would delete it: pass one of them")
    result = run_comparison(config, args.out, jobs=args.jobs, resume=args.resume, overwrite=args.overwrite,
                            progress=not args.quiet)
    summary = write_comparison_report(result, args.out)
    for row in summary["means"]:
        logger.info("%-10s %-16s Task 0 at early stop %5.1f%%, newest task %5.1f%%", row["method"], row["setting"],
                    100 * row["task0_stop_mean"], 100 * row["task1_stop_mean"])
    verdict = summary["claim"]
    if verdict.get("holds") is not None:
        logger.info("Freeze keeps the most Task 0 among methods within %.0f points of SEQ's newest task: %s (best: %s)",
                    100 * config.tolerance, "yes" if verdict["holds"] else "no", verdict["best"])
    logger.info("wrote %s", f"{args.out}/report.md")
    return 0
