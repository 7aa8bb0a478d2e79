"""Training any HF causal LM through transformers' ``Trainer``, on encoded records.

Records are encoded by :mod:`.records` (loss on the completion only for prompt/completion
records, on every token for text records). The collator right-pads a batch to its longest
sequence.

:func:`train_model` runs AdamW through ``Trainer`` on CPU by default, reports nowhere
(``report_to=[]``) and saves nothing unless asked. Parameters with ``requires_grad=False``
stay out of the optimizer (``Trainer`` builds its parameter groups from trainable tensors),
so freezing works as DESIGN.md §4 asks. Its ``checkpoint-N`` folders are full-state and
written atomically (:mod:`.checkpoints`); ``resume_from`` continues a killed run from one.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import pandas as pd
import torch
from transformers import (PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainerControl,
                          TrainerState, TrainingArguments)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..errors import CheckpointNotFoundError, InvalidDataError
from .checkpoints import (STAGING_DIR, CheckpointPlan, ResumableCallback, StagedCheckpointCallback, load_callback_states,
                          load_weights)
from .evaluate import _keeps_logits
from .records import IGNORE_INDEX, EncodedExample, PaddingCollator, Record, encode_records
from .settings import TrainSettings

__all__ = ["TrainingResult", "train_model", "ExtraLoss", "EXTRA_PREFIX"]

logger = logging.getLogger(__name__)


class _ExampleDataset(torch.utils.data.Dataset):
    def __init__(self, examples: Sequence[EncodedExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": list(self.examples[i].input_ids), "labels": list(self.examples[i].labels)}


EXTRA_PREFIX = "extra_"
# A loss term added to training: (model, the batch's extra_* entries without the prefix) → a scalar.
ExtraLoss = Callable[[torch.nn.Module, Mapping[str, torch.Tensor]], torch.Tensor]


def _answer_head_kwargs(model: torch.nn.Module, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Model kwargs that compute the output head at answer positions only, or none.

    With labels on the answer alone (prompt/completion records), most positions carry
    ``IGNORE_INDEX``, and with a large vocabulary the head at every position is a large part of
    a step: on SmolLM2 (49k, tied) a QA step of batch 8 took 3.22 s instead of 3.62 on one thread
    (``benchmarks/bench_answer_head.py``). For models whose forward takes
    ``logits_to_keep`` and whose loss is transformers' ``ForCausalLMLoss``, the head runs at the
    K positions (ascending, the union over the batch) that predict a labelled token, and the
    loss gets those positions' targets as ``shift_labels``: the same loss and gradients (the
    positions left out contribute nothing), and ``num_items_in_batch`` still divides it as
    before. Returns ``{}`` (the model's own path) otherwise, or when every position is labelled.
    """
    labels = inputs.get("labels")
    if labels is None or getattr(model, "loss_type", None) != "ForCausalLM" or not _keeps_logits(model):
        return {}
    targets = labels[:, 1:]  # position t predicts token t + 1
    keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    if keep.numel() == targets.shape[1]:
        return {}
    return {"logits_to_keep": keep, "shift_labels": targets[:, keep].contiguous()}


class _AnswerHeadTrainer(Trainer):
    """``Trainer`` whose causal-LM loss computes the output head at labelled positions only
    (:func:`_answer_head_kwargs`; the same loss, less compute)."""

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Optional[Union[torch.Tensor, int]] = None) -> Any:
        if self.model_accepts_loss_kwargs and self.label_smoother is None and self.compute_loss_func is None:
            inputs = {**inputs, **_answer_head_kwargs(self.accelerator.unwrap_model(model), inputs)}
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)


class _ExtraLossTrainer(_AnswerHeadTrainer):
    """``Trainer`` whose training loss gets ``extra_loss(model, extras)`` added (e.g. an EWC penalty, or
    LAMOL's language-model term): ``extras`` are the batch's ``extra_*`` entries, taken out of the
    inputs (without the prefix) before the model sees them."""

    def __init__(self, *args: Any, extra_loss: ExtraLoss, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._extra_loss = extra_loss

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Optional[Union[torch.Tensor, int]] = None) -> Any:
        extras = {k[len(EXTRA_PREFIX):]: inputs.pop(k) for k in list(inputs) if k.startswith(EXTRA_PREFIX)}
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if return_outputs:
            loss, outputs = result
            return loss + self._extra_loss(model, extras), outputs
        return result + self._extra_loss(model, extras)


class _QuietProgressCallback(ProgressCallback):
    """Trainer's ``tqdm`` bar without the log dicts it would print under it (they go to logging)."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        return None


class _LossLogCallback(TrainerCallback):
    """Sends Trainer's log dicts to :mod:`logging` instead of stdout."""

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            logger.info("step %d: loss %.4f, lr %.3g", state.global_step, logs["loss"],
                        logs.get("learning_rate", math.nan))


@dataclass
class TrainingResult:
    """What a :func:`train_model` run did.

    Attributes:
        steps: optimizer steps taken.
        final_loss: mean training loss over the last logging window (nats per target token).
        losses: DataFrame with ``step``, ``loss`` (mean over the window ending at ``step``),
            ``learning_rate``.
        runtime_s: wall-clock seconds of ``Trainer.train``.
        seconds_per_step: ``runtime_s / steps``.
        engine: what the Trainer wrapped the model in to train it (``DeepSpeedEngine``,
            ``DistributedDataParallel``, or the model's own class in one process); empty when a
            resumed run had nothing left to train.

    After a resume, ``steps`` counts from the start of the run, ``losses`` holds the windows
    logged before the kill too, and ``runtime_s`` is this call's time alone.
    """

    steps: int
    final_loss: float
    losses: pd.DataFrame = field(repr=False)
    runtime_s: float
    seconds_per_step: float
    engine: str = ""


def train_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_records: Sequence[Union[Record, EncodedExample]],
    settings: TrainSettings,
    *,
    seed: int,
    callbacks: Sequence[TrainerCallback] = (),
    checkpoints: Optional[CheckpointPlan] = None,
    resume_from: Optional[Union[str, "os.PathLike[str]"]] = None,
    device: str = "cpu",
    progress: bool = False,
    report_to: Sequence[str] = (),
    extra_loss: Optional[ExtraLoss] = None,
    collator: Optional[Callable[[Sequence[Mapping[str, Sequence[int]]]], dict[str, torch.Tensor]]] = None,
    deepspeed: Optional[Mapping[str, Any]] = None,
) -> TrainingResult:
    """Train ``model`` in place for ``settings.steps`` AdamW steps with ``transformers.Trainer``.

    Args:
        model: a causal LM; its trainable parameters (``requires_grad=True``) are optimized.
        tokenizer: encodes ``train_records`` and supplies the pad id.
        train_records: QA records (loss on the completion + EOS), ``{"text"}`` records (loss
            on all tokens), or already :class:`EncodedExample` s.
        settings: steps, learning rate and schedule, batch size, weight decay, clipping, logging
            window (:class:`~.settings.TrainSettings`; its early-stop fields are for callbacks).
        seed: seeds the batch order (``data_seed``) and Trainer's own ``set_seed``. Note that
            ``Trainer`` seeds the global ``random``/``numpy``/``torch`` generators with it.
        callbacks: extra ``TrainerCallback`` s (e.g. :class:`EvaluateEveryCallback`).
        checkpoints: save full-state ``checkpoint-N`` folders (weights, optimizer, scheduler,
            RNG, data position, and the state of the :class:`~.checkpoints.ResumableCallback` s
            among ``callbacks``) as :class:`~.checkpoints.CheckpointPlan` says, atomically; None
            saves nothing (``Trainer`` then writes into a temporary directory, deleted afterwards).
        resume_from: a complete checkpoint of an earlier run of the same call (see
            :func:`~.checkpoints.last_checkpoint`): training continues from its step with its
            weights, optimizer, scheduler, RNG and data position, and the resumable callbacks
            get their state back. On CPU the result is bit-identical to an uninterrupted run.
            ``model`` must be built as for the first run (e.g. the same frozen tensors).
        device: ``cpu`` (even when an accelerator is present) or ``cuda``.
        progress: show Trainer's ``tqdm.auto`` progress bar.
        report_to: transformers' experiment-tracker integrations to log to (e.g. ``["tensorboard"]``;
            empty: none). Where they write is theirs to read from the environment.
        extra_loss: a differentiable term added to every training step's loss,
            ``extra_loss(model, extras)``, computed from the model being trained and the batch's
            ``extra_*`` entries that ``collator`` added (e.g. the EWC penalty, or LAMOL's
            language-model loss, of :mod:`spurious_diag.continual`); it is included in the logged
            losses. None: the plain language-model loss.
        collator: turns each batch of examples (``input_ids`` / ``labels`` lists) into tensors
            (e.g. :class:`~spurious_diag.continual.replay.ReplayCollator`, which adds replayed
            examples); None: :class:`~.records.PaddingCollator` with the tokenizer's pad id.
        deepspeed: a DeepSpeed config (:func:`~.deepspeed_config.read_deepspeed_config`): the
            Trainer trains under DeepSpeed (ZeRO stage 0–2; on the CPU with gloo, too). None: no DeepSpeed.

    Returns:
        :class:`TrainingResult`. The model is left in eval mode.
    """
    if resume_from is not None and not os.path.isdir(resume_from):
        raise CheckpointNotFoundError("resume_from is not a directory", resume_from)
    steps, warmup_steps = settings.steps, settings.warmup_steps
    if settings.schedule == "constant":
        scheduler, scheduler_kwargs = ("constant_with_warmup" if warmup_steps else "constant"), {}
    elif settings.schedule == "linear":
        scheduler, scheduler_kwargs = "linear", {}
    else:
        scheduler, scheduler_kwargs = "cosine_with_min_lr", {"min_lr_rate": settings.min_lr_ratio}

    n_encoded = sum(isinstance(r, EncodedExample) for r in train_records)
    if n_encoded == len(train_records):
        examples = list(train_records)
    elif n_encoded == 0:
        examples = encode_records(tokenizer, train_records)  # type: ignore[arg-type]
    else:
        raise InvalidDataError("train_records mixes EncodedExample with raw records")
    if not examples:
        raise InvalidDataError("no training records")

    callbacks = list(callbacks)
    resumables = [cb for cb in callbacks if isinstance(cb, ResumableCallback)]
    start_step, finished = 0, False
    if resume_from is not None:
        finished = load_callback_states(resume_from, resumables)
        saved_state = TrainerState.load_from_json(os.path.join(os.fspath(resume_from), "trainer_state.json"))
        start_step = int(saved_state.global_step)
        logger.info("resuming from %s (step %d%s)", resume_from, start_step, ", training had ended" if finished else "")
        if finished:  # Trainer would take one more step; the checkpoint is the result
            load_weights(model, resume_from)
            model.eval()
            return _result(saved_state, 0.0, 0)
    staging = None
    if checkpoints is not None:
        staging = os.path.join(os.fspath(checkpoints.directory), STAGING_DIR)
        shutil.rmtree(staging, ignore_errors=True)  # a save torn by a kill
        callbacks.append(StagedCheckpointCallback(staging, checkpoints.directory, resumables, keep=checkpoints.keep))

    with tempfile.TemporaryDirectory(prefix="spurious-diag-train-") as scratch:
        args = TrainingArguments(
            output_dir=staging or scratch,
            max_steps=steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.lr,
            lr_scheduler_type=scheduler,
            lr_scheduler_kwargs=scheduler_kwargs,
            warmup_steps=warmup_steps,
            weight_decay=settings.weight_decay,
            max_grad_norm=settings.max_grad_norm,
            optim=settings.optimizer,
            seed=seed,
            data_seed=seed,
            logging_strategy="steps",
            # Never longer than the run, so that a final loss is always logged.
            logging_steps=max(1, min(settings.logging_steps, steps)),
            save_strategy="steps" if checkpoints is not None else "no",
            save_steps=checkpoints.every if checkpoints is not None else 500,
            report_to=list(report_to),
            use_cpu=device == "cpu",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            remove_unused_columns=False,
            log_level="warning",
            deepspeed=dict(deepspeed) if deepspeed is not None else None,
        )
        trainer_class: Any = _AnswerHeadTrainer
        trainer_kwargs: dict[str, Any] = {}
        if extra_loss is not None:
            trainer_class, trainer_kwargs = _ExtraLossTrainer, {"extra_loss": extra_loss}
        trainer = trainer_class(
            model=model,
            args=args,
            data_collator=collator or PaddingCollator(pad_token_id=tokenizer.pad_token_id),
            train_dataset=_ExampleDataset(examples),
            processing_class=tokenizer,
            callbacks=[_LossLogCallback(), *callbacks],
            **trainer_kwargs,
        )
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        if progress:
            trainer.add_callback(_QuietProgressCallback)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=os.fspath(resume_from) if resume_from is not None else None)
        runtime = time.perf_counter() - start
    if staging is not None and int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(staging, ignore_errors=True)

    model.eval()
    return _result(trainer.state, runtime, int(trainer.state.global_step) - start_step,
                   type(trainer.model_wrapped).__name__)


def _result(state: TrainerState, runtime: float, steps_this_call: int, engine: str = "") -> TrainingResult:
    history = [h for h in state.log_history if "loss" in h]
    losses = pd.DataFrame(
        {"step": [h["step"] for h in history], "loss": [float(h["loss"]) for h in history],
         "learning_rate": [float(h.get("learning_rate", math.nan)) for h in history]}
    )
    final_loss = float(losses["loss"].iloc[-1]) if len(losses) else math.nan
    return TrainingResult(steps=int(state.global_step), final_loss=final_loss, losses=losses, runtime_s=runtime,
                          seconds_per_step=runtime / max(steps_this_call, 1), engine=engine)
