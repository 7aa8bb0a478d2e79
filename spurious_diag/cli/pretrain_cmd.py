"""``spurious-diag pretrain --out DIR``: pretrain the Biography base model (the one the package ships)."""

from __future__ import annotations

import argparse
import logging

from ..biography.defaults import PRETRAINING, ModelShape
from ..training.settings import TrainSettings
from .options import add_options, add_out_flags, options_from_args

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain the Biography base model from scratch (~6 min on one CPU thread)",
                       description="Generates the seeded Biography scenario, pretrains a tiny Llama on the "
                       "biographies of the pretraining people and writes it with its tokenizer and a manifest "
                       "(seed, data hash, settings, loss curve). The defaults are the shipped model's.")
    add_out_flags(p)
    p.add_argument("--scenario-seed", type=int, default=0, help="seed of the generated people and texts (default 0)")
    p.add_argument("--seed", type=int, default=0, help="model initialization and batch order (default 0)")
    add_options(p, TrainSettings, base=PRETRAINING, only=("steps", "lr"))
    add_options(p, ModelShape)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..biography import build_scenario
    from ..biography.pretrain import pretrain_base_model, save_base_model
    from ..outputs import output_dir

    settings = options_from_args(TrainSettings, args, PRETRAINING)
    shape = options_from_args(ModelShape, args)
    with output_dir(args.out, args.overwrite):  # fail now, not after minutes of training
        scenario = build_scenario(seed=args.scenario_seed)
        logger.info("scenario seed %d, data hash %s", args.scenario_seed, scenario.sha256)
        base = pretrain_base_model(scenario, settings, seed=args.seed, shape=shape, progress=True)
        save_base_model(base, args.out, overwrite=True)
    logger.info("wrote %s (final loss %.4f)", args.out, base.manifest["pretraining"]["final_loss"])
    return 0
