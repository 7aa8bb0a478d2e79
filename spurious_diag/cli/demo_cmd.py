"""``spurious-diag demo [--out DIR]``: the main job, the Biography scenario end to end."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os

from ..outputs import prepare_out_dir

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join("runs", "demo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the built-in Biography scenario end to end and write its report",
        description="From the shipped base model: Task 0, Task 1 with SEQ and a Freeze(k) sweep, the diagnosis of "
        "SEQ at its dip (probes + audit), Freeze at the recommended depth; writes report.md, figures/, CSVs and "
        "summary.json. About 10 minutes on 2 CPU cores.")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT}, replaced if present)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out other than the default")
    p.add_argument("--seed", type=int, default=0, help="seed of the Task 1 data order and the probes (default 0)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes for the Task 1 runs (default 2)")
    p.add_argument("--quick", action="store_true",
                   help="a one-minute smoke run (short tasks, few people probed): checks the pipeline, not the science")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..scenarios.biography_demo import DemoConfig, run_demo

    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    # The demo may replace its own default directory; any other needs --overwrite.
    overwrite = args.overwrite or os.path.normpath(args.out) == os.path.normpath(DEFAULT_OUT)
    out = prepare_out_dir(args.out, overwrite=overwrite)
    config = DemoConfig.quick(jobs=args.jobs) if args.quick else DemoConfig(jobs=args.jobs)
    config = dataclasses.replace(config, seed=args.seed)
    result = run_demo(out, config)
    summary = result.summary
    logger.info("wrote %s", os.path.join(out, "report.md"))
    seq, freeze = summary["seq"], summary["freeze"]
    logger.info("Task 0 after Task 0: %.3f; SEQ at its dip (step %d): %.3f; verdict: %s; recommended Freeze(%s)",
                summary["task0_after"], seq["dip_step"], seq["task0"]["dip"], summary["diagnosis"]["verdict"],
                summary["diagnosis"]["recommended_k"])
    if freeze:
        logger.info("Task 0 at early stop: SEQ %.3f vs %s %.3f (Task 1 %.3f vs %.3f)", seq["task0"]["stop"],
                    freeze["method"], freeze["task0"]["stop"], seq["task1"]["stop"], freeze["task1"]["stop"])
    failed = [t["target"] for t in summary["targets"] if not t["pass"]]
    logger.info("targets: %d of %d met%s", len(summary["targets"]) - len(failed), len(summary["targets"]),
                f" (not met: {'; '.join(failed)})" if failed else "")
    return 0
