"""``spurious-diag train --model DIR --data train.jsonl --out DIR [--freeze-layers N]``: freeze-and-train."""

from __future__ import annotations

import argparse
import logging

from ..errors import UsageError
from ..freeze.finetune import FinetuneConfig, finetune, load_config_file
from ..outputs import check_out_not_input, prepare_out_dir

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
    p.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out from its newest complete checkpoint (weights, optimizer, "
                   "scheduler, RNG, data position); give the same inputs and settings as the first run")
    p.add_argument("--config", help="JSON file of training settings (keys: see FinetuneConfig); flags override it")
    p.add_argument("--freeze-layers", type=int, metavar="N", help="freeze the embeddings and blocks 0..N-1 (default: none)")
    p.add_argument("--no-freeze-embeddings", dest="freeze_embeddings", action="store_false", default=None,
                   help="with --freeze-layers: leave the embeddings trainable")
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--schedule", choices=["constant", "linear", "cosine"])
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--early-stop-at", type=float, metavar="EM", help="stop once --eval exact match reaches EM")
    p.add_argument("--save-every", type=int,
                   help="write full-state checkpoints/checkpoint-N every N steps (what --resume continues from)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["cpu", "cuda"], help="where to train (default cpu)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = FinetuneConfig(**(load_config_file(args.config) if args.config else {}))
    config = config.replace(freeze_layers=args.freeze_layers, freeze_embeddings=args.freeze_embeddings,
                            steps=args.steps, lr=args.lr, batch_size=args.batch_size, schedule=args.schedule,
                            warmup_steps=args.warmup_steps, weight_decay=args.weight_decay,
                            eval_every=args.eval_every, early_stop_at=args.early_stop_at,
                            save_every=args.save_every, seed=args.seed, device=args.device)
    check_out_not_input(args.out, [args.model])
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --out; --overwrite would delete it: pass one of them")
    # --resume keeps what is in --out; finetune checks it holds a run to continue.
    out = args.out if args.resume else prepare_out_dir(args.out, overwrite=args.overwrite)
    result = finetune(args.model, args.data, out, config, eval_path=args.eval, resume=args.resume)
    logger.info("trained %d steps (%.3f s/step, final loss %.4f); wrote %s", result.steps, result.seconds_per_step,
                result.final_loss, out)
    if result.freeze is not None:
        logger.info("%s; frozen tensors bit-identical", result.freeze.summary())
    return 0
