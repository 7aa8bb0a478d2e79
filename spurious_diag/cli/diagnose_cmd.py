"""``spurious-diag diagnose BEFORE AFTER --task old.jsonl [--base BASE] --out DIR``: probes and verdict.

Writes into ``--out`` (atomically, file by file): one CSV per probe table that ran
(``accuracy.csv``, ``recovery.csv``, ``format.csv``, ``format_overall.csv``, ``linear_probe.csv``,
``grafting.csv``, ``residual_shift.csv``, ``geometry.csv``), ``summary.json`` and ``report.md``
(:mod:`spurious_diag.report.diagnosis`).

When AFTER is a directory of Trainer ``checkpoint-N`` folders (a run, e.g. ``spurious-diag train
--save-every N``'s ``checkpoints/``), it diagnoses the whole run instead: the forgetting maps (layer
× step), the linear-probe map and the recovery curve over its checkpoints (``--every K`` reads every
K-th), written as ``forgetting_map.csv``, ``probe_map.csv``, ``recovery_by_step.csv``, figures,
``summary.json`` and ``report.md`` (:mod:`spurious_diag.report.run_diagnosis`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Optional

from ..probes.options import DiagnoseOptions
from .options import add_options, add_out_flags, options_from_args

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="probe whether forgetting is spurious (alignment lost) or real (knowledge lost); recommend a freeze depth",
        description="Compare BEFORE (after the old task) and AFTER (after the new task) on old-task records: "
        "recovery with a few examples (against BASE as control), task vs pretraining format, linear probes, "
        "layer grafting, residual-stream shift and update geometry, then a verdict by stated rules. "
        "Records are JSONL {\"prompt\", \"completion\"} with optional \"attribute\" and \"person_id\". Inputs are only read.",
    )
    p.add_argument("before", help="HF model dir: the model before the new task")
    p.add_argument("after", help="HF model dir: the model after the new task; or a directory of checkpoint-N "
                                 "folders (a run on the new task): then the forgetting maps and recovery curve")
    p.add_argument("--task", required=True, metavar="OLD.jsonl", help="old-task records (held out and recovery pool)")
    p.add_argument("--base", metavar="DIR", help="a model that never learned the old task (recovery control; audit start)")
    p.add_argument("--new-task", metavar="NEW.jsonl", help="new-task records (grafting reports both tasks)")
    p.add_argument("--pretrain-format", metavar="PROBES.jsonl",
                   help="the old-task facts in the pretraining format (format probe)")
    p.add_argument("--recovery-task", metavar="OTHER.jsonl",
                   help="old-task records about other individuals for recovery (then all of --task is held out)")
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="with a run directory as AFTER: read every K-th checkpoint (the first and last always)")
    add_out_flags(p)
    add_options(p, DiagnoseOptions)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import CheckpointNotFoundError, UsageError
    from ..io.chain import is_chain_dir
    from ..outputs import check_out_not_input, output_dir
    from ..probes.diagnose import diagnose
    from ..report.diagnosis import write_diagnosis_report
    from ..training.records import read_records

    options = options_from_args(DiagnoseOptions, args)
    # One --seed for the split, the probes and the recovery runs.
    options = dataclasses.replace(options, recovery=dataclasses.replace(options.recovery, seed=options.seed))
    inputs = [p for p in (args.before, args.after, args.base, args.task, args.new_task, args.pretrain_format,
                          args.recovery_task) if p]
    check_out_not_input(args.out, inputs)
    for label, path in (("BEFORE", args.before), ("AFTER", args.after), ("--base", args.base)):
        if path and not os.path.isdir(path):
            raise CheckpointNotFoundError(f"{label} must be an HF model directory", path)
    if args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    run = is_chain_dir(args.after)
    old = read_records(args.task)
    new = read_records(args.new_task) if args.new_task else None
    pretraining = read_records(args.pretrain_format) if args.pretrain_format else None
    recovery_pool = read_records(args.recovery_task) if args.recovery_task else None
    if run:
        if new or pretraining:
            logger.info("a run directory is mapped on the old task only: --new-task and --pretrain-format are unused")
        return _run_maps(args, options, old, recovery_pool)
    with output_dir(args.out, args.overwrite) as out:
        result = diagnose(args.before, args.after, old, base=args.base, new_task_records=new,
                          pretraining_records=pretraining, recovery_records=recovery_pool, options=options)
        written = write_diagnosis_report(result, out, {
            "before_path": args.before, "after_path": args.after, "base_path": args.base, "task": args.task,
            "new_task": args.new_task, "pretrain_format": args.pretrain_format, "recovery_task": args.recovery_task})
    for path in written:
        logger.info("wrote %s", path)
    logger.info("verdict: %s; recommended freeze depth: %s", result.verdict, result.recommendation.k)
    return 0


def _run_maps(args: argparse.Namespace, options: DiagnoseOptions, old: list, recovery_pool: Optional[list]) -> int:
    """``diagnose BEFORE RUN_DIR``: the forgetting maps and the recovery curve over the run."""
    from ..outputs import output_dir
    from ..probes.run_diagnosis import diagnose_run
    from ..report.run_diagnosis import write_run_diagnosis

    with output_dir(args.out, args.overwrite) as out:
        result = diagnose_run(args.before, args.after, old, base=args.base, recovery_records=recovery_pool,
                              options=options, every=args.every)
        written = write_run_diagnosis(result, out, {"task": args.task, "recovery_task": args.recovery_task})
    for path in written:
        logger.info("wrote %s", path)
    s = result.summary
    logger.info("run: old task %.3f before, lowest %.3f at step %d; most restored at that step by reverting layer %s",
                s["acc_before"], s["acc_dip"], s["dip_step"], s.get("most_restoring_layer"))
    return 0
