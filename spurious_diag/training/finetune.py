"""The engine of ``spurious-diag train``: freeze-and-train any HF causal LM on prompt/completion JSONL.

Output directory layout (auditable: ``spurious-diag audit MODEL OUT`` compares the start
and the result; ``spurious-diag audit OUT/checkpoints`` audits the trajectory):

    OUT/model.safetensors, config.json, tokenizer files   the trained model (written here)
    OUT/checkpoints/checkpoint-N/                         full-state snapshots (weights, optimizer, scheduler,
                                                          RNG, evaluation rows), with ``save_every``
    OUT/checkpoints/run.json                              the run's inputs and settings, checked on resume
    OUT/freeze_report.json, metrics.csv, train_summary.json
                                                          written by :func:`spurious_diag.report.train.write_train_report`

A killed run continues with ``resume=True`` (``--resume``) from its newest complete checkpoint
and ends with the same weights, bit for bit on CPU, as a run that was never interrupted.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

import pandas as pd
import torch

from ..errors import CheckpointNotFoundError, UsageError
from ..freeze import FreezeReport
from ..freeze.lora import LoraPlacement
from ..outputs import staged_dir
from .checkpoints import CheckpointPlan, last_checkpoint
from .deepspeed_config import read_deepspeed_config
from .records import read_records
from .resume import check_identity, read_identity, write_identity
from .settings import FinetuneOptions
from .trainer import TrainingResult

__all__ = ["FinetuneResult", "finetune", "is_main_process", "run_identity"]

logger = logging.getLogger(__name__)

@dataclass
class FinetuneResult:
    """What :func:`finetune` did (the report writer turns it into ``train_summary.json`` and friends).

    Attributes:
        out_dir: where the model was written; model_dir, data, eval: the inputs (absolute paths).
        records: training records read.
        options: the :class:`FinetuneOptions` used.
        freeze: what was frozen (None for SEQ); frozen tensors were verified bit-identical.
        training: steps, losses and timing (:class:`~.trainer.TrainingResult`).
        metrics: the evaluations (step × metric), with ``eval``.
        resumed_from: the checkpoint a resumed run continued from.
        lora: where the LoRA adapters went (with ``lora_rank``); the base was verified bit-identical.
    """

    out_dir: str
    model_dir: str
    data: str
    eval: Optional[str]
    records: int
    options: FinetuneOptions
    freeze: Optional[FreezeReport]
    training: TrainingResult
    metrics: Optional[pd.DataFrame] = None
    resumed_from: Optional[str] = None
    lora: Optional[LoraPlacement] = None

    @property
    def steps(self) -> int:
        return self.training.steps

    @property
    def final_loss(self) -> float:
        return self.training.final_loss

    @property
    def seconds_per_step(self) -> float:
        return self.training.seconds_per_step


def is_main_process() -> bool:
    """Rank 0 of a distributed run (``accelerate launch``), or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0


def run_identity(model_dir: str, train_path: str, eval_path: Optional[str], options: FinetuneOptions) -> dict[str, Any]:
    """What makes a ``train`` run this run: its inputs (absolute paths) and its flat settings."""
    return {"model": os.path.abspath(model_dir), "data": os.path.abspath(train_path),
            "eval": os.path.abspath(eval_path) if eval_path else None, "config": options.to_dict()}


def _resume_point(out_dir: str, identity: Mapping[str, Any]) -> str:
    """The newest complete checkpoint of the run in ``out_dir``, after checking it is this run."""
    checkpoints = os.path.join(out_dir, "checkpoints")
    checkpoint = last_checkpoint(checkpoints)
    if checkpoint is None:
        raise CheckpointNotFoundError("nothing to resume from: no complete checkpoint in checkpoints/ "
                                      "(a run writes them with --save-every N)", out_dir)
    check_identity(read_identity(checkpoints, "a train run"), identity, out_dir)
    return checkpoint


def finetune(model_dir: str, train_path: str, out_dir: str, options: FinetuneOptions = FinetuneOptions(), *,
             eval_path: Optional[str] = None, resume: bool = False, progress: bool = True) -> FinetuneResult:
    """Fine-tune the HF causal LM in ``model_dir`` on ``train_path`` (loss on completions only).

    Frozen tensors are left out of the optimizer and checked bit-identical to the start after
    training (:func:`~.engine.train_task`); a difference raises
    :class:`~spurious_diag.errors.FrozenWeightsChangedError` and nothing is saved. The model and
    tokenizer are written to ``out_dir`` (by the main process); the reports are written by
    :func:`spurious_diag.report.train.write_train_report`.

    With ``resume``, training continues from the newest complete checkpoint in
    ``out_dir/checkpoints`` (weights, optimizer, scheduler, RNG, data position and the
    evaluation rows so far), so the result equals an uninterrupted run's. The inputs and
    ``options`` must be those of the run being continued. Frozen tensors are still checked
    against ``model_dir``, not against the checkpoint.

    Raises:
        CheckpointNotFoundError / InvalidDataError: missing or malformed model or data; with
            ``resume``, no complete checkpoint to resume from.
        UsageError: a tokenizer without an EOS token, a freeze depth beyond the model, CUDA
            without a GPU; with ``resume``, inputs or settings other than the run's.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..devices import check_device
    from ..io.hf_dir import find_weight_files
    from .callbacks import EarlyStopAtCallback, EvaluateEveryCallback
    from .engine import train_task
    from .evaluate import evaluate_records

    check_device(options.device)
    _check_engine(options.device)
    deepspeed = (read_deepspeed_config(options.deepspeed, batch_size=options.settings.batch_size)
                 if options.deepspeed is not None else None)
    find_weight_files(model_dir)  # clear error for a missing/empty model dir before transformers sees it
    identity = run_identity(model_dir, train_path, eval_path, options)
    resume_from = _resume_point(out_dir, identity) if resume else None
    records = read_records(train_path)
    eval_records = read_records(eval_path) if eval_path else None
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.eos_token_id is None:
        raise UsageError("the tokenizer has no EOS token: completions could not be terminated", model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    settings = options.settings

    callbacks: list[Any] = []
    evaluator = None
    if eval_records is not None:
        def metrics(m: Any) -> Mapping[str, float]:
            result = evaluate_records(m, tokenizer, eval_records)
            return {"exact_match": result.exact_match, "first_token_acc": result.first_token_acc}

        evaluator = EvaluateEveryCallback(options.eval_every or settings.steps, metrics)
        callbacks.append(evaluator)
        if settings.early_stop_at is not None:
            callbacks.append(EarlyStopAtCallback(evaluator, settings.early_stop_at,
                                                 stop_training=settings.stop_training))

    checkpoints = None
    if options.save_every:
        checkpoints = CheckpointPlan(os.path.join(out_dir, "checkpoints"), options.save_every)
        os.makedirs(checkpoints.directory, exist_ok=True)
        if resume_from is None and is_main_process():
            write_identity(checkpoints.directory, identity)
    lora = None
    if options.lora_rank is not None:  # adapters on blocks >= k; every base weight stays as it is
        from ..freeze.lora import add_lora_above

        model, lora = add_lora_above(model, options.freeze_layers or 0, rank=options.lora_rank,
                                     alpha=options.lora_alpha, modules=options.lora_modules)
    with tracker_environment(options.report_to, out_dir):
        run = train_task(model, tokenizer, records, settings, seed=options.seed,
                         freeze_layers=None if lora else options.freeze_layers,
                         freeze_embeddings=options.freeze_embeddings, callbacks=callbacks, checkpoints=checkpoints,
                         resume_from=resume_from, device=options.device, progress=progress,
                         report_to=() if options.report_to == "none" else (options.report_to,),
                         deepspeed=deepspeed, label=f"training of {model_dir}")
    if lora is not None:
        _verify_lora_base(model_dir, model)
    if is_main_process():
        _save(out_dir, model, tokenizer)  # a PEFT model saves its adapter directory
    return FinetuneResult(out_dir, os.path.abspath(model_dir), os.path.abspath(train_path),
                          os.path.abspath(eval_path) if eval_path else None, len(records), options, run.freeze,
                          run.training, evaluator.frame() if evaluator is not None else None,
                          os.path.relpath(resume_from, out_dir) if resume_from else None, lora)


# accelerate launch --use_fsdp / --use_deepspeed say so in the environment of every process.
_SHARDING_ENGINES = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}


def _check_engine(device: str) -> None:
    """Refuse FSDP or DeepSpeed through ``accelerate launch`` on the CPU, where transformers' Trainer
    does not shard: with ``use_cpu`` it runs plain DDP without a word, without it it stops with
    "Using fsdp only works in distributed training." (measured with transformers 5.24, accelerate
    1.15). DeepSpeed given to the Trainer itself (``--deepspeed CONFIG``) does run on the CPU.

    Raises:
        UsageError: an FSDP or DeepSpeed accelerate launch with ``--device cpu``.
    """
    engines = [name for key, name in _SHARDING_ENGINES.items() if os.environ.get(key, "").lower() == "true"]
    if engines and device == "cpu":
        hint = ("; for DeepSpeed on the CPU, launch with torchrun and pass --deepspeed CONFIG.json"
                if engines[0] == "DeepSpeed" else "")
        raise UsageError(f"{engines[0]} through accelerate needs --device cuda: on the CPU the Trainer would not "
                         f"shard (plain DDP instead); launch without --use_fsdp/--use_deepspeed for DDP{hint}")


# What each tracker needs installed, and the environment that points it into --out (offline for wandb).
_TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


@contextmanager
def tracker_environment(report_to: str, out_dir: str) -> Iterator[None]:
    """For the span of a run: TensorBoard event files into ``OUT/tensorboard``; wandb offline into
    ``OUT/wandb`` (unless ``WANDB_MODE`` / ``WANDB_DIR`` are already set). Variables the user set win.

    Raises:
        UsageError: the tracker's package is not installed.
    """
    if report_to == "none":
        yield
        return
    package = _TRACKER_PACKAGES[report_to]
    if importlib.util.find_spec(package) is None:
        raise UsageError(f"--report-to {report_to} needs the {package} package: pip install {package}")
    wanted = {"tensorboard": {"TENSORBOARD_LOGGING_DIR": os.path.join(out_dir, "tensorboard")},
              "wandb": {"WANDB_MODE": "offline", "WANDB_DIR": out_dir}}[report_to]
    added = {key: value for key, value in wanted.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _verify_lora_base(model_dir: str, peft_model: Any) -> None:
    """Every weight of the base checkpoint bit-identical inside the trained PEFT model.

    Raises:
        FrozenWeightsChangedError: a base weight moved during training.
    """
    from ..freeze.lora import base_state
    from ..freeze.verify import assert_frozen
    from ..io.loader import load_checkpoint

    base = load_checkpoint(model_dir)
    check = assert_frozen(base, dict(base_state(peft_model)), list(base), path=model_dir)
    logger.info("LoRA: %d base tensors verified bit-identical", len(check.identical))


def _save(out_dir: str, model: Any, tokenizer: Any) -> None:
    """Write the model and tokenizer into ``out_dir`` through a staging dir, file by file renamed."""
    staging_target = os.path.join(out_dir, ".model.partial")
    with staged_dir(staging_target, overwrite=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    for name in os.listdir(staging_target):
        os.replace(os.path.join(staging_target, name), os.path.join(out_dir, name))
    shutil.rmtree(staging_target, ignore_errors=True)
