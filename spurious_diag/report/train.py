"""A ``train`` run's reports: ``freeze_report.json``, ``metrics.csv`` and ``train_summary.json``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..outputs import atomic_write_json
from .common import write_csv, write_summary

if TYPE_CHECKING:
    from ..training.finetune import FinetuneResult

__all__ = ["SCHEMA_VERSION", "write_train_report"]

SCHEMA_VERSION = 1


def write_train_report(result: "FinetuneResult") -> list[str]:
    """Write the reports of a :func:`~spurious_diag.training.finetune.finetune` run into its ``out_dir``.

    ``freeze_report.json`` (what was frozen, the trainable fraction, tied tensors; only when
    something was frozen), ``metrics.csv`` (the evaluations, with ``--eval``) and
    ``lora_report.json`` (with LoRA: where the adapters went, rank, alpha, trainable fraction) and
    ``train_summary.json`` (inputs, settings, steps, losses, timing, the bit-identity check).
    """
    out = result.out_dir
    written = []
    if result.freeze is not None:
        path = os.path.join(out, "freeze_report.json")
        atomic_write_json(path, result.freeze.to_dict())
        written.append(path)
    if result.metrics is not None:
        path = os.path.join(out, "metrics.csv")
        write_csv(result.metrics, path)
        written.append(path)
    if result.lora is not None:
        path = os.path.join(out, "lora_report.json")
        atomic_write_json(path, result.lora.to_dict())
        written.append(path)
    path = os.path.join(out, "train_summary.json")
    write_summary(path, "train", {
        "model": result.model_dir, "data": result.data, "eval": result.eval, "records": result.records,
        "config": result.options.to_dict(), "steps": result.steps, "final_loss": result.final_loss,
        "seconds_per_step": result.seconds_per_step, "resumed_from": result.resumed_from,
        "trainable_fraction": (result.lora.trainable_fraction if result.lora else
                               result.freeze.trainable_fraction if result.freeze else 1.0),
        "frozen_bit_identical": True if (result.freeze or result.lora) else None,
        "lora": result.lora is not None,
        "engine": result.training.engine,  # e.g. DeepSpeedEngine, DistributedDataParallel
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }, SCHEMA_VERSION)
    written.append(path)
    return written
