"""``spurious-diag diagnose BEFORE AFTER --task old.jsonl [--base BASE] --out DIR``: probes and verdict.

Writes into ``--out`` (atomically, file by file): one CSV per probe table that ran
(``accuracy.csv``, ``recovery.csv``, ``format.csv``, ``format_overall.csv``, ``linear_probe.csv``,
``grafting.csv``, ``residual_shift.csv``, ``geometry.csv``), ``summary.json``
(:meth:`~spurious_diag.probes.verdict.Diagnosis.to_dict`) and ``report.md``.
"""

from __future__ import annotations

import argparse
import logging
import os

from ..errors import CheckpointNotFoundError, UsageError
from ..outputs import atomic_write_json, atomic_write_text, check_out_not_input, prepare_out_dir
from ..report import write_csv

logger = logging.getLogger(__name__)


def _int_list(flag: str, minimum: int):
    """An argparse type: comma-separated integers, each >= ``minimum``, for ``flag``."""
    def parse(value: str) -> tuple[int, ...]:
        try:
            numbers = tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be comma-separated integers, got {value!r}") from None
        if not numbers or any(n < minimum for n in numbers):
            kind = "positive" if minimum == 1 else "non-negative"
            raise argparse.ArgumentTypeError(f"{flag} needs {kind} integers, got {value!r}")
        return numbers
    return parse


_ns = _int_list("--recovery-n", 1)
_ks = _int_list("--graft-ks", 0)


def _probes(value: str) -> tuple[str, ...]:
    from ..probes.verdict import PROBES

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in PROBES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--probes: unknown {unknown or value!r}; choose from {','.join(PROBES)}")
    return names


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..probes.verdict import PROBES

    p = sub.add_parser(
        "diagnose",
        help="probe whether forgetting is spurious (alignment lost) or real (knowledge lost); recommend a freeze depth",
        description="Compare BEFORE (after the old task) and AFTER (after the new task) on old-task records: "
        "recovery with a few examples (against BASE as control), task vs pretraining format, linear probes, "
        "layer grafting, residual-stream shift and update geometry, then a verdict by stated rules. "
        "Records are JSONL {\"prompt\", \"completion\"} with optional \"attribute\" and \"person_id\". Inputs are only read.",
    )
    p.add_argument("before", help="HF model dir: the model before the new task")
    p.add_argument("after", help="HF model dir: the model after the new task")
    p.add_argument("--task", required=True, metavar="OLD.jsonl", help="old-task records (held out and recovery pool)")
    p.add_argument("--base", metavar="DIR", help="a model that never learned the old task (recovery control; audit start)")
    p.add_argument("--new-task", metavar="NEW.jsonl", help="new-task records (grafting reports both tasks)")
    p.add_argument("--pretrain-format", metavar="PROBES.jsonl",
                   help="the old-task facts in the pretraining format (format probe)")
    p.add_argument("--recovery-task", metavar="OTHER.jsonl",
                   help="old-task records about other individuals for recovery (then all of --task is held out)")
    p.add_argument("--out", required=True, help="output directory (must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    p.add_argument("--probes", type=_probes, default=PROBES, help=f"comma-separated subset of {','.join(PROBES)}")
    p.add_argument("--recovery-n", type=_ns, default=(10, 50, 100), help="recovery example counts (default 10,50,100)")
    p.add_argument("--recovery-steps", type=int, default=40, help="recovery fine-tune steps (default 40)")
    p.add_argument("--recovery-lr", type=float, default=1e-4, help="recovery learning rate (default 1e-4)")
    p.add_argument("--recovery-batch", type=int, default=32, help="recovery batch size (default 32)")
    p.add_argument("--test-fraction", type=float, default=0.5, help="held-out share of individuals (default 0.5)")
    p.add_argument("--max-candidates", type=int, default=20,
                   help="format probe: rank the truth among at most this many pool values (0: the whole pool)")
    p.add_argument("--graft-ks", type=_ks, metavar="K,K,...",
                   help="graft depths to try (default every k in 0..L; thin out for deep models)")
    p.add_argument("--seed", type=int, default=0, help="split, recovery and probe seed")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..probes.recovery import RecoverySettings
    from ..probes.verdict import diagnose
    from ..training.records import read_records

    if not 0.0 < args.test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if args.recovery_steps < 1 or args.recovery_lr <= 0 or args.recovery_batch < 1:
        raise UsageError("--recovery-steps and --recovery-batch must be >= 1 and --recovery-lr > 0")
    inputs = [p for p in (args.before, args.after, args.base, args.task, args.new_task, args.pretrain_format,
                          args.recovery_task) if p]
    check_out_not_input(args.out, inputs)
    for label, path in (("BEFORE", args.before), ("AFTER", args.after), ("--base", args.base)):
        if path and not os.path.isdir(path):
            raise CheckpointNotFoundError(f"{label} must be an HF model directory", path)
    old = read_records(args.task)
    new = read_records(args.new_task) if args.new_task else None
    pretraining = read_records(args.pretrain_format) if args.pretrain_format else None
    recovery_pool = read_records(args.recovery_task) if args.recovery_task else None
    out = prepare_out_dir(args.out, overwrite=args.overwrite)
    settings = RecoverySettings(ns=args.recovery_n, steps=args.recovery_steps, lr=args.recovery_lr,
                                batch_size=args.recovery_batch, seed=args.seed)
    result = diagnose(args.before, args.after, old, base=args.base, new_task_records=new,
                      pretraining_records=pretraining, recovery_records=recovery_pool, probes=args.probes,
                      recovery=settings, test_fraction=args.test_fraction, seed=args.seed,
                      max_candidates=args.max_candidates or None, graft_ks=args.graft_ks)
    summary = result.to_dict()
    summary["settings"]["inputs"].update({"before_path": args.before, "after_path": args.after, "base_path": args.base,
                                          "task": args.task, "new_task": args.new_task,
                                          "pretrain_format": args.pretrain_format,
                                          "recovery_task": args.recovery_task})
    written = []
    for name, frame in sorted(result.frames.items()):
        path = os.path.join(out, f"{name}.csv")
        write_csv(frame, path)
        written.append(path)
    atomic_write_json(os.path.join(out, "summary.json"), summary)
    atomic_write_text(os.path.join(out, "report.md"), result.to_markdown())
    written += [os.path.join(out, "summary.json"), os.path.join(out, "report.md")]
    for path in written:
        logger.info("wrote %s", path)
    logger.info("verdict: %s; recommended freeze depth: %s", result.verdict, result.recommendation.k)
    return 0
