"""``spurious-diag figures [--run DIR] [--out DIR]``: regenerate every figure from a demo run's tables."""

from __future__ import annotations

import argparse
import logging
import os

from ..biography.demo_config import DemoConfig
from .options import add_options, options_from_args

logger = logging.getLogger(__name__)

DEFAULT_OUT = "figures"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "figures", help="draw every figure of a demo run (running the demo first when no --run is given)",
        description="Reads the CSVs of a `spurious-diag demo` output directory and writes one PNG per figure "
        "(replacing those of the same name). Without --run, runs the demo into a temporary directory first "
        "(4 to 16 minutes).")
    p.add_argument("--run", dest="run_dir", metavar="DIR", help="a demo output directory (default: run the demo now)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"where the PNGs go (default {DEFAULT_OUT}/)")
    add_options(p, DemoConfig, only=("jobs",))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from ..errors import CheckpointNotFoundError
    from ..outputs import check_out_not_input
    from ..report.figures import make_figures

    if args.run_dir:
        if not os.path.isfile(os.path.join(args.run_dir, "summary.json")):
            raise CheckpointNotFoundError("not a demo output directory (no summary.json)", args.run_dir)
        check_out_not_input(args.out, [os.path.join(args.run_dir, "summary.json")])
        written = make_figures(args.run_dir, args.out)
    else:
        from ..biography.demo import run_demo

        with tempfile.TemporaryDirectory(prefix="spurious-diag-figures-") as run_dir:
            logger.info("no --run given: running the demo first")
            run_demo(run_dir, options_from_args(DemoConfig, args))
            written = make_figures(run_dir, args.out)
    for path in written.values():
        logger.info("wrote %s", path)
    return 0
