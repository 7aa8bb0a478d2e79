"""The engine of ``spurious-diag train``: freeze-and-train any HF causal LM on prompt/completion JSONL.

Output directory layout (auditable: ``spurious-diag audit MODEL OUT`` compares the start
and the result; ``spurious-diag audit OUT/checkpoints`` audits the trajectory):

    OUT/model.safetensors, config.json, tokenizer files   the trained model
    OUT/checkpoints/checkpoint-N/                         full-state snapshots (weights, optimizer, scheduler,
                                                          RNG, evaluation rows), with --save-every
    OUT/checkpoints/run.json                              the run's inputs and settings, checked by --resume
    OUT/freeze_report.json                                what was frozen, trainable fraction, tied weights
    OUT/metrics.csv                                       evaluations (step × metric), with --eval
    OUT/train_summary.json                                settings, timings, losses, the bit-identity check

A killed run continues with ``resume=True`` (``--resume``) from its newest complete checkpoint
and ends with the same weights, bit for bit on CPU, as a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from .. import __version__
from ..errors import CheckpointNotFoundError, InvalidDataError, UsageError
from ..outputs import atomic_write_json, staged_dir
from ..training.checkpoints import ResumableCallback, last_checkpoint
from ..training.records import read_records
from .freezing import FreezeReport, freeze_bottom_layers
from .verify import FrozenWeightsChangedError

__all__ = ["FinetuneConfig", "FinetuneResult", "EarlyStopAtCallback", "finetune", "load_config_file"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Training settings of ``spurious-diag train`` (all overridable by ``--config FILE`` and flags).

    Attributes:
        freeze_layers: Freeze(k): blocks 0..k−1 (and the embeddings, if ``freeze_embeddings``)
            frozen; ``None`` is SEQ (nothing frozen).
        steps: optimizer steps; lr: peak learning rate; batch_size: sequences per step.
        schedule: ``constant``, ``linear`` or ``cosine``; warmup_steps: linear warmup.
        weight_decay: AdamW decoupled weight decay (frozen tensors are outside the optimizer).
        eval_every: evaluate the ``--eval`` records every N steps (0: only at the start and end).
        early_stop_at: stop at the first evaluation whose exact match reaches this value.
        save_every: write ``checkpoints/checkpoint-N`` every N steps (0: none).
        seed: data order and Trainer seed.
        device: ``cpu`` (default) or ``cuda``; chosen explicitly, never by what happens to be installed.
    """

    freeze_layers: Optional[int] = None
    freeze_embeddings: bool = True
    steps: int = 100
    lr: float = 1e-5
    batch_size: int = 8
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    eval_every: int = 0
    early_stop_at: Optional[float] = None
    save_every: int = 0
    seed: int = 0
    device: str = "cpu"

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def load_config_file(path: str) -> dict[str, Any]:
    """A JSON object of :class:`FinetuneConfig` fields.

    Raises:
        InvalidDataError: not JSON, not an object, or unknown keys (named in the message).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InvalidDataError("no such config file", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDataError(f"config is not valid JSON ({exc})", path) from None
    if not isinstance(data, dict):
        raise InvalidDataError("config must be a JSON object", path)
    known = {f.name for f in dataclasses.fields(FinetuneConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidDataError(f"unknown config keys {unknown}; known: {sorted(known)}", path)
    return data


@dataclass
class FinetuneResult:
    out_dir: str
    freeze: Optional[FreezeReport]
    steps: int
    final_loss: float
    seconds_per_step: float
    metrics: Optional[Any] = None


class EarlyStopAtCallback(ResumableCallback):
    """Stop training at the first evaluation of ``evaluator`` whose ``key`` reaches ``threshold``.

    Must come after ``evaluator`` (an ``EvaluateEveryCallback``) in the callback list.
    """

    def __init__(self, evaluator: Any, threshold: float, key: str = "exact_match"):
        self.evaluator, self.threshold, self.key = evaluator, threshold, key
        self.stopped_at: Optional[int] = None

    def state_dict(self) -> dict[str, Any]:
        return {"stopped_at": self.stopped_at}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stopped_at = state["stopped_at"]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        rows = self.evaluator.rows
        if rows and rows[-1]["step"] == state.global_step and rows[-1].get(self.key, 0.0) >= self.threshold:
            self.stopped_at = state.global_step
            control.should_training_stop = True


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _run_identity(model_dir: str, train_path: str, eval_path: Optional[str], config: FinetuneConfig) -> dict[str, Any]:
    return {"model": os.path.abspath(model_dir), "data": os.path.abspath(train_path),
            "eval": os.path.abspath(eval_path) if eval_path else None, "config": dataclasses.asdict(config)}


def _resume_point(out_dir: str, identity: Mapping[str, Any]) -> str:
    """The newest complete checkpoint of the run in ``out_dir``, after checking it is this run."""
    checkpoints = os.path.join(out_dir, "checkpoints")
    checkpoint = last_checkpoint(checkpoints)
    if checkpoint is None:
        raise CheckpointNotFoundError("nothing to resume from: no complete checkpoint in checkpoints/ "
                                      "(a run writes them with --save-every N)", out_dir)
    try:
        with open(os.path.join(checkpoints, "run.json"), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        raise CheckpointNotFoundError("nothing to resume from: checkpoints/run.json is missing or unreadable",
                                      out_dir) from None
    differ = [f"{key}: {saved.get(key)!r} then, {identity[key]!r} now" for key in ("model", "data", "eval")
              if saved.get(key) != identity[key]]
    saved_config = saved.get("config") or {}
    differ += [f"{key}: {saved_config.get(key)!r} then, {value!r} now"
               for key, value in identity["config"].items() if saved_config.get(key) != value]
    if differ:
        raise UsageError("--resume needs the inputs and settings of the run it continues; differing: "
                         + "; ".join(differ), out_dir)
    return checkpoint


def finetune(model_dir: str, train_path: str, out_dir: str, config: FinetuneConfig, *,
             eval_path: Optional[str] = None, overwrite: bool = False, resume: bool = False) -> FinetuneResult:
    """Fine-tune the HF causal LM in ``model_dir`` on ``train_path`` (loss on completions only).

    Frozen tensors are left out of the optimizer and checked bit-identical to the start after
    training; a difference raises :class:`FrozenWeightsChangedError` and nothing is saved.

    With ``resume``, training continues from the newest complete checkpoint in
    ``out_dir/checkpoints`` (weights, optimizer, scheduler, RNG, data position and the
    evaluation rows so far), so the result equals an uninterrupted run's. The inputs and
    ``config`` must be those of the run being continued. Frozen tensors are still checked
    against ``model_dir``, not against the checkpoint.

    Raises:
        CheckpointNotFoundError / InvalidDataError: missing or malformed model or data; with
            ``resume``, no complete checkpoint to resume from.
        OutputDirError: ``out_dir`` not empty (without ``overwrite``) or overlapping the model.
        UsageError: a tokenizer without an EOS token, or a freeze depth beyond the model; with
            ``resume``, inputs or settings other than the run's.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..io.hf_dir import find_weight_files
    from ..training.evaluate import evaluate_records
    from ..training.trainer import EvaluateEveryCallback, train_model

    if config.device not in ("cpu", "cuda"):
        raise UsageError(f"device must be 'cpu' or 'cuda', got {config.device!r}")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available here")
    find_weight_files(model_dir)  # clear error for a missing/empty model dir before transformers sees it
    identity = _run_identity(model_dir, train_path, eval_path, config)
    resume_from = _resume_point(out_dir, identity) if resume else None
    records = read_records(train_path)
    eval_records = read_records(eval_path) if eval_path else None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.eos_token_id is None:
        raise UsageError("the tokenizer has no EOS token: completions could not be terminated", model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    report = None
    if config.freeze_layers is not None:
        report = freeze_bottom_layers(model, config.freeze_layers, embeddings=config.freeze_embeddings)
    named = dict(model.named_parameters())
    # Taken from model_dir before any resume loads a checkpoint: the check is against the true start.
    frozen_before = {n: named[n].detach().clone() for n in (report.frozen if report else [])}

    callbacks: list[Any] = []
    evaluator = None
    if eval_records is not None:
        def metrics(m: Any) -> Mapping[str, float]:
            result = evaluate_records(m, tokenizer, eval_records)
            return {"exact_match": result.exact_match, "first_token_acc": result.first_token_acc}

        evaluator = EvaluateEveryCallback(config.eval_every or config.steps, metrics)
        callbacks.append(evaluator)
        if config.early_stop_at is not None:
            callbacks.append(EarlyStopAtCallback(evaluator, config.early_stop_at))

    checkpoints = os.path.join(out_dir, "checkpoints") if config.save_every else None
    if checkpoints:
        os.makedirs(checkpoints, exist_ok=True)
        if resume_from is None and _is_main_process():
            atomic_write_json(os.path.join(checkpoints, "run.json"), identity)
    result = train_model(model, tokenizer, records, steps=config.steps, lr=config.lr, batch_size=config.batch_size,
                         seed=config.seed, schedule=config.schedule, warmup_steps=config.warmup_steps,
                         weight_decay=config.weight_decay, callbacks=callbacks, output_dir=checkpoints,
                         save_steps=config.save_every or None, resume_from=resume_from, progress=True,
                         use_cpu=config.device == "cpu")

    changed = [n for n, t in frozen_before.items()
               if not torch.equal(t.cpu().view(torch.uint8), named[n].detach().cpu().view(torch.uint8))]
    if changed:
        raise FrozenWeightsChangedError(f"{len(changed)} frozen tensors changed during training", model_dir, changed[0])
    if report is not None:
        logger.info("rank %s: %d frozen tensors bit-identical after %d steps", os.environ.get("RANK", "0"),
                    len(frozen_before), result.steps)

    if _is_main_process():
        _save(out_dir, model, tokenizer)
        if report is not None:
            atomic_write_json(os.path.join(out_dir, "freeze_report.json"), report.to_dict())
        if evaluator is not None:
            from ..report import write_csv

            write_csv(evaluator.frame(), os.path.join(out_dir, "metrics.csv"))
        atomic_write_json(os.path.join(out_dir, "train_summary.json"), {
            "schema_version": 1, "package": {"name": "spurious_diag", "version": __version__}, "kind": "train",
            "model": os.path.abspath(model_dir), "data": os.path.abspath(train_path),
            "eval": os.path.abspath(eval_path) if eval_path else None, "records": len(records),
            "config": dataclasses.asdict(config), "steps": result.steps, "final_loss": result.final_loss,
            "seconds_per_step": result.seconds_per_step,
            "resumed_from": os.path.relpath(resume_from, out_dir) if resume_from else None,
            "trainable_fraction": report.trainable_fraction if report else 1.0,
            "frozen_bit_identical": True if report else None,
        })
    return FinetuneResult(out_dir, report, result.steps, result.final_loss, result.seconds_per_step,
                          evaluator.frame() if evaluator is not None else None)


def _save(out_dir: str, model: Any, tokenizer: Any) -> None:
    """Write the model and tokenizer into ``out_dir`` through a staging dir, file by file renamed."""
    staging_target = os.path.join(out_dir, ".model.partial")
    with staged_dir(staging_target, overwrite=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    for name in os.listdir(staging_target):
        os.replace(os.path.join(staging_target, name), os.path.join(out_dir, name))
    shutil.rmtree(staging_target, ignore_errors=True)
