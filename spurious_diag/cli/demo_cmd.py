"""``spurious-diag demo [--out DIR]``: the main job, the Biography scenario end to end."""

from __future__ import annotations

import argparse
import logging
import os

from ..biography.demo_config import DemoConfig
from .options import add_options, add_out_flags, options_from_args

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join("runs", "demo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the built-in Biography scenario end to end and write its report",
        description="From the shipped base model: Task 0, Task 1 with SEQ and a Freeze(k) sweep, the diagnosis of "
        "SEQ at its dip (probes + audit), Freeze at the recommended depth; writes report.md, figures/, CSVs and "
        "summary.json. 4 to 16 minutes on 2 CPU cores, depending on what else runs there.")
    add_out_flags(p, default=DEFAULT_OUT, default_note=", replaced if present; any other needs --overwrite")
    add_options(p, DemoConfig)
    p.add_argument("--quick", action="store_true",
                   help="a one-minute smoke run (short tasks, few people probed): checks the pipeline, not the science")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..biography.demo import run_demo
    from ..outputs import output_dir

    config = options_from_args(DemoConfig, args, DemoConfig.quick(jobs=DemoConfig().jobs) if args.quick else DemoConfig())
    # The demo may replace its own default directory; any other needs --overwrite.
    overwrite = args.overwrite or os.path.normpath(args.out) == os.path.normpath(DEFAULT_OUT)
    with output_dir(args.out, overwrite) as out:
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
