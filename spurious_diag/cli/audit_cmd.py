"""``spurious-diag audit CKPT_0 CKPT_1 [...] --out DIR``: per-layer update geometry of a checkpoint chain."""

from __future__ import annotations

import argparse
import logging

from ..updates.options import AuditOptions
from .options import add_options, add_out_flags, options_from_args

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="measure every update of a checkpoint chain: sizes, cosines, principal angles",
        description="Post-hoc audit. By default a chain: update i is CKPT_i - CKPT_{i-1}. With two checkpoints "
        "there is one update (sizes, no angles); angles need three checkpoints, or --base with CKPT_0 and two "
        "others. A single directory of Trainer checkpoint-N folders is a trajectory. Inputs are only read. "
        "Under torchrun (torchrun --nproc_per_node N -m spurious_diag audit ...) each process audits a share of "
        "the tensors and the first writes the outputs.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="HF model dir, .safetensors/.bin/.gguf file, PEFT LoRA adapter dir, or a dir of checkpoint-N folders")
    add_out_flags(p)
    add_options(p, AuditOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..distributed import fail_together, process_group_from_env
    from ..errors import UsageError
    from ..io.chain import is_chain_dir
    from ..outputs import check_out_dir, check_out_not_input, output_dir
    from ..report.audit import write_audit_report
    from ..updates.engine import audit

    if len(args.checkpoints) == 1 and not is_chain_dir(args.checkpoints[0]):
        raise UsageError("one CKPT given: pass two or more checkpoints, or one directory of checkpoint-N folders",
                         args.checkpoints[0])
    base = AuditOptions(pairs="trajectory") if len(args.checkpoints) == 1 else AuditOptions()
    options = options_from_args(AuditOptions, args, base)
    check_out_not_input(args.out, args.checkpoints)
    # Under torchrun: every rank checks --out, audits its share and receives every row; rank 0
    # alone writes, and only after all ranks succeeded (a failure on any rank leaves no output).
    with process_group_from_env() as world:
        with fail_together():
            check_out_dir(args.out, args.overwrite)
        result = audit(args.checkpoints, options)
        with fail_together():
            if world.is_main:
                with output_dir(args.out, args.overwrite) as out:
                    for path in write_audit_report(result, out):
                        logger.info("wrote %s", path)
    return 0
