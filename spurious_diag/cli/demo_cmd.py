"""``spurious-diag demo [--out DIR] [--seed S]``: the main job on the built-in scenario."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

from ..audit import AuditOptions, audit
from ..outputs import prepare_out_dir
from ..report import write_audit_report

logger = logging.getLogger(__name__)

DEFAULT_OUT = os.path.join("runs", "demo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the built-in scenario end to end and write its report")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT}, replaced if present)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out other than the default")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenario")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..scenarios.planted import write_planted_chain

    # The demo may replace its own default directory; any other needs --overwrite.
    overwrite = args.overwrite or os.path.normpath(args.out) == os.path.normpath(DEFAULT_OUT)
    out = prepare_out_dir(args.out, overwrite=overwrite)
    with tempfile.TemporaryDirectory(prefix="spurious-diag-demo-") as work:
        logger.info("writing the planted checkpoint chain (tiny Llama, seed %d)", args.seed)
        chain = write_planted_chain(work, seed=args.seed)
        result = audit(chain, AuditOptions(rank=4))
        result.summary["scenario"] = {
            "name": "planted",
            "seed": args.seed,
            "truth": "Task 1 update orthogonal to Task 0's in the embeddings and blocks 0-1, same subspace in blocks 2-3",
        }
        for path in write_audit_report(result, out):
            logger.info("wrote %s", path)
    ranking = result.summary["rankings"]["by_orthogonality"].get("1-2", [])
    logger.info("most orthogonal task updates (layer, -1 = embeddings): %s", ranking)
    return 0
