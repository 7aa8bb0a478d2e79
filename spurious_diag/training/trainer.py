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

from ..errors import InvalidDataError
from .checkpoints import STAGING_DIR, ResumableCallback, StagedCheckpointCallback, load_callback_states, load_weights
from .records import IGNORE_INDEX, EncodedExample, Record, encode_records

__all__ = [
    "PaddingCollator",
    "TrainingResult",
    "EvaluateEveryCallback",
    "train_model",
]

logger = logging.getLogger(__name__)


class _ExampleDataset(torch.utils.data.Dataset):
    def __init__(self, examples: Sequence[EncodedExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": list(self.examples[i].input_ids), "labels": list(self.examples[i].labels)}


@dataclass(frozen=True)
class PaddingCollator:
    """Right-pads a batch to its longest sequence.

    Returns ``input_ids`` (B×T, pad id), ``attention_mask`` (B×T, 1 on real tokens) and
    ``labels`` (B×T, −100 on padding), all int64.

    >>> batch = PaddingCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
    ...                                          {"input_ids": [5], "labels": [5]}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[5, 6, 7], [5, 0, 0]], [[1, 1, 1], [1, 0, 0]], [[-100, 6, 7], [5, -100, -100]])
    """

    pad_token_id: int

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        labels = torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            attention_mask[row, :n] = 1
            labels[row, :n] = torch.tensor(f.get("labels", f["input_ids"]), dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class EvaluateEveryCallback(ResumableCallback):
    """Calls ``evaluate(model)`` before training (step 0) and every ``every`` optimizer steps.

    ``evaluate`` returns a flat mapping of numbers (e.g. ``{"task0_em": 0.9}``); the model is
    put in eval mode under ``torch.no_grad()`` for the call and restored afterwards. Rows
    ``{"step": ..., **metrics}`` accumulate in ``rows``; :meth:`frame` returns them as a
    DataFrame. The evaluation draws no random numbers, so it does not change the training run.
    The rows travel with each full-state checkpoint; a resumed run continues them.
    """

    def __init__(self, every: int, evaluate: Callable[[PreTrainedModel], Mapping[str, float]], *,
                 at_start: bool = True, max_step: Optional[int] = None):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.evaluate = evaluate
        self.at_start = at_start
        self.max_step = max_step
        self.rows: list[dict[str, Any]] = []

    def _run(self, model: PreTrainedModel, step: int) -> None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            metrics = dict(self.evaluate(model))
        model.train(was_training)
        self.rows.append({"step": step, **metrics})
        logger.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = [dict(row) for row in state["rows"]]

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Optional[PreTrainedModel] = None, **kwargs: Any) -> None:
        if self.at_start and model is not None and not self.resumed:
            self._run(model, state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: Optional[PreTrainedModel] = None, **kwargs: Any) -> None:
        step = state.global_step
        if model is not None and step % self.every == 0 and (self.max_step is None or step <= self.max_step):
            self._run(model, step)

    def frame(self) -> pd.DataFrame:
        """One row per evaluation: ``step`` then the metric columns."""
        return pd.DataFrame(self.rows)


class _ExtraLossTrainer(Trainer):
    """``Trainer`` whose training loss gets ``extra_loss(model)`` added (e.g. an EWC penalty)."""

    def __init__(self, *args: Any, extra_loss: Callable[[torch.nn.Module], torch.Tensor], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._extra_loss = extra_loss

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Optional[Union[torch.Tensor, int]] = None) -> Any:
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if return_outputs:
            loss, outputs = result
            return loss + self._extra_loss(model), outputs
        return result + self._extra_loss(model)


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

    After a resume, ``steps`` counts from the start of the run, ``losses`` holds the windows
    logged before the kill too, and ``runtime_s`` is this call's time alone.
    """

    steps: int
    final_loss: float
    losses: pd.DataFrame = field(repr=False)
    runtime_s: float
    seconds_per_step: float


def train_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_records: Sequence[Union[Record, EncodedExample]],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    schedule: str = "constant",
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    callbacks: Sequence[TrainerCallback] = (),
    output_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    save_steps: Optional[int] = None,
    keep_checkpoints: Optional[int] = None,
    resume_from: Optional[Union[str, "os.PathLike[str]"]] = None,
    logging_steps: int = 10,
    use_cpu: bool = True,
    progress: bool = False,
    extra_loss: Optional[Callable[[torch.nn.Module], torch.Tensor]] = None,
) -> TrainingResult:
    """Train ``model`` in place for ``steps`` AdamW steps with ``transformers.Trainer``.

    Args:
        model: a causal LM; its trainable parameters (``requires_grad=True``) are optimized.
        tokenizer: encodes ``train_records`` and supplies the pad id.
        train_records: QA records (loss on the completion + EOS), ``{"text"}`` records (loss
            on all tokens), or already :class:`EncodedExample` s.
        steps: optimizer steps (the data is cycled through as many epochs as needed,
            reshuffled each epoch).
        lr: peak learning rate.
        batch_size: sequences per step.
        seed: seeds the batch order (``data_seed``) and Trainer's own ``set_seed``. Note that
            ``Trainer`` seeds the global ``random``/``numpy``/``torch`` generators with it.
        schedule: ``"constant"`` (with linear warmup when ``warmup_steps`` > 0), ``"linear"``
            (decay to 0) or ``"cosine"`` (decay to ``min_lr_ratio · lr``), all after warmup.
        warmup_steps: linear warmup from 0 to ``lr``.
        min_lr_ratio: floor of the cosine schedule, as a fraction of ``lr``.
        weight_decay: AdamW decoupled weight decay (0 by default).
        max_grad_norm: gradient clipping (global L2 norm).
        callbacks: extra ``TrainerCallback`` s (e.g. :class:`EvaluateEveryCallback`).
        output_dir: where ``Trainer`` writes; only used for checkpoints. None: a temporary
            directory, deleted afterwards.
        save_steps: save a full-state ``checkpoint-N`` (weights, optimizer, scheduler, RNG,
            data position, and the state of the :class:`~.checkpoints.ResumableCallback` s
            among ``callbacks``) every ``save_steps`` steps and at the end, in ``output_dir``,
            atomically (staged in ``output_dir/.partial``); None saves nothing.
        keep_checkpoints: keep only the newest this many checkpoints (None: all).
        resume_from: a complete checkpoint of an earlier run of the same call (see
            :func:`~.checkpoints.last_checkpoint`): training continues from its step with its
            weights, optimizer, scheduler, RNG and data position, and the resumable callbacks
            get their state back. On CPU the result is bit-identical to an uninterrupted run.
            ``model`` must be built as for the first run (e.g. the same frozen tensors).
        logging_steps: loss logging window (capped at ``steps``); ``final_loss`` is the
            mean over the last complete window.
        use_cpu: run on CPU even when an accelerator is present.
        progress: show Trainer's ``tqdm.auto`` progress bar.
        extra_loss: a differentiable term added to every training step's loss, computed from
            the model being trained (e.g. the EWC penalty of :mod:`spurious_diag.sequential`);
            it is included in the logged losses. None: the plain language-model loss.

    Returns:
        :class:`TrainingResult`. The model is left in eval mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if save_steps is not None and output_dir is None:
        raise ValueError("save_steps needs an output_dir")
    if resume_from is not None and not os.path.isdir(resume_from):
        raise ValueError(f"resume_from is not a directory: {resume_from}")
    if schedule == "constant":
        scheduler, scheduler_kwargs = ("constant_with_warmup" if warmup_steps else "constant"), {}
    elif schedule == "linear":
        scheduler, scheduler_kwargs = "linear", {}
    elif schedule == "cosine":
        scheduler, scheduler_kwargs = "cosine_with_min_lr", {"min_lr_rate": min_lr_ratio}
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'constant', 'linear' or 'cosine'")

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
    if save_steps:
        staging = os.path.join(os.fspath(output_dir), STAGING_DIR)  # type: ignore[arg-type]
        shutil.rmtree(staging, ignore_errors=True)  # a save torn by a kill
        callbacks.append(StagedCheckpointCallback(staging, os.fspath(output_dir), resumables,  # type: ignore[arg-type]
                                                  keep=keep_checkpoints))

    with tempfile.TemporaryDirectory(prefix="spurious-diag-train-") as scratch:
        args = TrainingArguments(
            output_dir=staging or scratch,
            max_steps=steps,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            lr_scheduler_type=scheduler,
            lr_scheduler_kwargs=scheduler_kwargs,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            max_grad_norm=max_grad_norm,
            optim="adamw_torch",
            seed=seed,
            data_seed=seed,
            logging_strategy="steps",
            # Never longer than the run, so that a final loss is always logged.
            logging_steps=max(1, min(logging_steps, steps)),
            save_strategy="steps" if save_steps else "no",
            save_steps=save_steps or 500,
            report_to=[],
            use_cpu=use_cpu,
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            remove_unused_columns=False,
            log_level="warning",
        )
        trainer_class: Any = Trainer
        trainer_kwargs: dict[str, Any] = {}
        if extra_loss is not None:
            trainer_class, trainer_kwargs = _ExtraLossTrainer, {"extra_loss": extra_loss}
        trainer = trainer_class(
            model=model,
            args=args,
            data_collator=PaddingCollator(pad_token_id=tokenizer.pad_token_id),
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
    return _result(trainer.state, runtime, int(trainer.state.global_step) - start_step)


def _result(state: TrainerState, runtime: float, steps_this_call: int) -> TrainingResult:
    history = [h for h in state.log_history if "loss" in h]
    losses = pd.DataFrame(
        {"step": [h["step"] for h in history], "loss": [float(h["loss"]) for h in history],
         "learning_rate": [float(h.get("learning_rate", math.nan)) for h in history]}
    )
    final_loss = float(losses["loss"].iloc[-1]) if len(losses) else math.nan
    return TrainingResult(steps=int(state.global_step), final_loss=final_loss, losses=losses, runtime_s=runtime,
                          seconds_per_step=runtime / max(steps_this_call, 1))
