"""``spurious-diag pretrain --out DIR``: pretrain the Biography base model (the one the package ships)."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain the Biography base model from scratch (~6 min on one CPU thread)",
                       description="Generates the seeded Biography scenario, pretrains a tiny Llama on the "
                       "biographies of the pretraining people and writes it with its tokenizer and a manifest "
                       "(seed, data hash, settings, loss curve).")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--scenario-seed", type=int, default=0, help="seed of the generated people and texts")
    p.add_argument("--seed", type=int, default=0, help="model init and batch order")
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..biography import build_scenario
    from ..biography.pretrain import pretrain_base_model, save_base_model
    from ..outputs import prepare_out_dir

    prepare_out_dir(args.out, overwrite=args.overwrite)  # fail now, not after minutes of training
    scenario = build_scenario(seed=args.scenario_seed)
    logger.info("scenario seed %d, data hash %s", args.scenario_seed, scenario.sha256)
    base = pretrain_base_model(scenario, steps=args.steps, seed=args.seed, lr=args.lr, num_layers=args.layers,
                               hidden_size=args.hidden, progress=True)
    save_base_model(base, args.out, overwrite=True)
    logger.info("wrote %s (final loss %.4f)", args.out, base.manifest["pretraining"]["final_loss"])
    return 0
