"""``spurious-diag train --model DIR --data train.jsonl --out DIR [--freeze-layers N]``: freeze-and-train."""

from __future__ import annotations

import argparse
import logging

from ..training.settings import FinetuneOptions
from .options import add_options, add_out_flags, options_from_args

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune an HF causal LM on prompt/completion JSONL, with the bottom layers frozen",
        description="Loss on the completion only. Frozen tensors (embeddings + blocks 0..N-1) are left out of the "
        "optimizer and checked bit-identical after training. Runs under `accelerate launch` too.",
    )
    p.add_argument("--model", required=True, help="HF model directory (with its tokenizer)")
    p.add_argument("--data", required=True, help='training JSONL: one {"prompt": ..., "completion": ...} per line')
    p.add_argument("--eval", help="evaluation JSONL (greedy exact match of the completions)")
    add_out_flags(p)
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out from its newest complete checkpoint (weights, optimizer, "
                   "scheduler, RNG, data position); give the same inputs and settings as the first run")
    p.add_argument("--config", help="JSON file of training settings (the flags' names with _ for -); flags override it")
    add_options(p, FinetuneOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import contextlib

    from ..errors import UsageError
    from ..outputs import check_out_not_input, output_dir
    from ..report.train import write_train_report
    from ..training.finetune import finetune, is_main_process

    base = FinetuneOptions.from_config_file(args.config) if args.config else FinetuneOptions()
    options = options_from_args(FinetuneOptions, args, base)
    check_out_not_input(args.out, [args.model])
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --out; --overwrite would delete it: pass one of them")
    # --resume keeps what is in --out; finetune checks it holds a run to continue.
    prepared = contextlib.nullcontext(args.out) if args.resume else output_dir(args.out, args.overwrite)
    with prepared as out:
        result = finetune(args.model, args.data, out, options, eval_path=args.eval, resume=args.resume)
        if is_main_process():
            for path in write_train_report(result):
                logger.info("wrote %s", path)
    logger.info("trained %d steps (%.3f s/step, final loss %.4f); wrote %s", result.steps, result.seconds_per_step,
                result.final_loss, out)
    if result.freeze is not None:
        logger.info("%s; frozen tensors bit-identical", result.freeze.summary())
    return 0
