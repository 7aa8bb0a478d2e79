"""``spurious-diag convert SRC OUT_DIR``: GGUF or .bin to an HF safetensors directory."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a .gguf or .bin checkpoint to an HF safetensors directory")
    p.add_argument("src", help=".gguf file, .bin file, or HF dir with .bin weights")
    p.add_argument("out_dir", help="directory to create (must not exist or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..io.convert import convert_checkpoint

    out = convert_checkpoint(args.src, args.out_dir, overwrite=args.overwrite)
    logger.info("wrote %s", out)
    return 0
