"""``spurious-diag audit CKPT_0 CKPT_1 [...] --out DIR``: per-layer update geometry of a checkpoint chain."""

from __future__ import annotations

import argparse
import logging

import torch

from ..audit import AuditOptions, audit
from ..errors import UsageError
from ..outputs import check_out_not_input, prepare_out_dir
from ..report import write_audit_report

logger = logging.getLogger(__name__)


def _rank(value: str) -> "int | str":
    if value == "energy":
        return value
    try:
        rank = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rank must be a positive integer or 'energy', got {value!r}") from None
    if rank < 1:
        raise argparse.ArgumentTypeError(f"--rank must be >= 1, got {rank}")
    return rank


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="measure every update of a checkpoint chain: sizes, cosines, principal angles",
        description="Post-hoc audit. By default a chain: update i is CKPT_i - CKPT_{i-1}. A single directory of "
        "Trainer checkpoint-N folders is a trajectory. Inputs are only read.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="HF model dir, .safetensors/.bin/.gguf file, PEFT LoRA adapter dir, or a dir of checkpoint-N folders")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    p.add_argument("--rank", type=_rank, default=16, help="singular vectors per update, or 'energy' (90%% energy rank)")
    p.add_argument("--base", action="store_true", help="measure every update from CKPT_0 (base->A vs base->B)")
    p.add_argument("--pairs", choices=["all", "consecutive", "trajectory"], default=None,
                   help="which pairs of updates to compare (default: all; trajectory for a checkpoint-N dir)")
    p.add_argument("--modules", metavar="REGEX", help="only tensors whose name or module matches REGEX")
    p.add_argument("--device", default="cpu", help="where SVDs run: cpu (default) or cuda")
    p.add_argument("--skip-mismatched", action="store_true",
                   help="report tensors whose names/shapes differ as skipped rows instead of failing")
    p.add_argument("--no-angles", dest="angles", action="store_false",
                   help="norms only: update sizes and cosines, no SVD (fast first look at big models)")
    p.add_argument("--intruders", action="store_true", help="also count intruder dimensions (slow: exact SVDs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomized SVD")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if len(args.checkpoints) == 1:
        from ..io.chain import is_chain_dir

        if not is_chain_dir(args.checkpoints[0]):
            raise UsageError("one CKPT given: pass two or more checkpoints, or one directory of checkpoint-N folders",
                             args.checkpoints[0])
    pairs = args.pairs or ("trajectory" if len(args.checkpoints) == 1 else "all")
    options = AuditOptions(base=args.base, rank=args.rank, pairs=pairs, modules=args.modules, device=args.device,
                           skip_mismatched=args.skip_mismatched, angles=args.angles, intruders=args.intruders, seed=args.seed,
                           dtype=torch.float32)
    check_out_not_input(args.out, args.checkpoints)
    out = prepare_out_dir(args.out, overwrite=args.overwrite)
    result = audit(args.checkpoints, options)
    for path in write_audit_report(result, out):
        logger.info("wrote %s", path)
    return 0
