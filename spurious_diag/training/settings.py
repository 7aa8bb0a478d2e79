"""How a task is trained: :class:`TrainSettings`, and the ``train`` command's :class:`FinetuneOptions`.

:class:`TrainSettings` is the one settings dataclass of every trainer of the package
(``spurious-diag train``, the continual runner, recovery, pretraining), checked once when it is
built. Standard library only, so that the command line can build its flags from these fields
without importing torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..errors import InvalidDataError, UsageError

__all__ = ["SCHEDULES", "DEVICES", "TRACKERS", "TrainSettings", "FinetuneOptions"]

SCHEDULES = ("constant", "linear", "cosine")
# transformers' names; the fused kernel updates every tensor in one pass (transformers' own default
# since torch 2.8; benchmarks/bench_optimizer.py measures it against the per-tensor one).
OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")
DEVICES = ("cpu", "cuda")
# transformers' names of the experiment trackers that ``train --report-to`` passes through.
TRACKERS = ("none", "tensorboard", "wandb")


@dataclass(frozen=True)
class TrainSettings:
    """The optimization of one task: AdamW through transformers' ``Trainer``.

    Attributes:
        steps: optimizer steps (the data is cycled through as many epochs as needed,
            reshuffled each epoch); the end of the task unless it stops early.
        lr: peak learning rate.
        batch_size: sequences per step.
        schedule: ``constant`` (with linear warmup when ``warmup_steps`` > 0), ``linear``
            (decay to 0) or ``cosine`` (decay to ``min_lr_ratio · lr``), all after warmup.
        warmup_steps: linear warmup from 0 to ``lr``.
        min_lr_ratio: floor of the cosine schedule, as a fraction of ``lr``.
        weight_decay: AdamW decoupled weight decay (frozen tensors are outside the optimizer).
        max_grad_norm: gradient clipping (global L2 norm).
        logging_steps: loss logging window (capped at ``steps``); the final loss is the mean
            over the last complete window.
        early_stop_at: exact match of the task's evaluation set that marks its *early-stop
            point* (the first evaluation reaching it); None: no early stopping.
        stop_training: end training at the early-stop point (default). False trains on to
            ``steps`` and only records the point, so one run gives both the early-stopped
            model's metrics and the end's (the metrics at the point are the same either way).
        optimizer: AdamW's implementation (:data:`OPTIMIZERS`): ``adamw_torch_fused`` (default,
            one kernel for all tensors) or ``adamw_torch`` (per-tensor ops); the same update up to
            float rounding.

    Raises:
        UsageError: a value out of range (named in the message).
    """

    steps: int = field(default=100, metadata={"help": "optimizer steps"})
    lr: float = field(default=1e-5, metadata={"help": "peak learning rate"})
    batch_size: int = field(default=8, metadata={"help": "sequences per step"})
    schedule: str = field(default="constant", metadata={"help": "learning-rate schedule after warmup",
                                                       "choices": SCHEDULES})
    warmup_steps: int = field(default=0, metadata={"help": "linear warmup steps"})
    min_lr_ratio: float = field(default=0.0, metadata={"cli": False})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"cli": False})
    logging_steps: int = field(default=10, metadata={"cli": False})
    early_stop_at: Optional[float] = field(default=None, metadata={
        "help": "stop once the --eval exact match reaches EM", "metavar": "EM"})
    stop_training: bool = field(default=True, metadata={"cli": False})
    optimizer: str = field(default="adamw_torch_fused", metadata={"cli": False})

    def __post_init__(self) -> None:
        _at_least("steps", self.steps, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("warmup_steps", self.warmup_steps, 0)
        _at_least("logging_steps", self.logging_steps, 1)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr must be a positive number, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise UsageError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.max_grad_norm > 0:
            raise UsageError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if self.early_stop_at is not None and not 0 < self.early_stop_at <= 1:
            raise UsageError(f"early_stop_at must be in (0, 1], got {self.early_stop_at}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _names(text: str) -> tuple[str, ...]:
    """Comma-separated names.

    >>> _names("q_proj, v_proj")
    ('q_proj', 'v_proj')
    """
    return tuple(v.strip() for v in text.split(",") if v.strip())


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (a config file; ``what`` names it in errors).

    Raises:
        InvalidDataError: a missing file, not JSON, or not an object (named, with the file).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InvalidDataError(f"no such {what} file", path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDataError(f"{what} is not valid JSON ({exc})", path) from None
    if not isinstance(data, dict):
        raise InvalidDataError(f"{what} must be a JSON object", path)
    return data


@dataclass(frozen=True)
class FinetuneOptions:
    """Settings of ``spurious-diag train`` beyond the optimization (all overridable by ``--config`` and flags).

    Attributes:
        settings: the optimization (:class:`~.settings.TrainSettings`: steps, lr, batch size,
            schedule, weight decay, early stop).
        freeze_layers: Freeze(k): blocks 0..k−1 (and the embeddings, if ``freeze_embeddings``)
            frozen; ``None`` is SEQ (nothing frozen).
        eval_every: evaluate the ``--eval`` records every N steps (0: only at the start and end).
        save_every: write ``checkpoints/checkpoint-N`` every N steps (0: none).
        seed: data order and Trainer seed.
        device: ``cpu`` (default) or ``cuda``; chosen explicitly, never by what happens to be installed.
        report_to: an experiment tracker that also receives the training loss (``none``,
            ``tensorboard`` into ``OUT/tensorboard``, or ``wandb``, offline into ``OUT`` unless
            ``WANDB_MODE`` is set).
        lora_rank: train PEFT LoRA adapters of this rank instead of the whole model, on blocks
            ``freeze_layers``..L−1 only (:func:`spurious_diag.freeze.lora.add_lora_above`); the
            embeddings and the base weights stay as they were, verified bit-identical.
        lora_alpha: LoRA's scale numerator (default ``2 * lora_rank``).
        lora_modules: the module names LoRA adapts, or ``all-linear`` (every linear layer of the blocks).
        deepspeed: train under DeepSpeed with this JSON config (ZeRO stage 0–2,
            :mod:`~.deepspeed_config`); launch with ``torchrun`` (or ``deepspeed``). Works on the CPU.

    Raises:
        UsageError: a value out of range.
    """

    settings: TrainSettings = field(default_factory=TrainSettings)
    freeze_layers: Optional[int] = field(default=None, metadata={
        "help": "freeze the embeddings and blocks 0..N-1 (default: none)", "metavar": "N"})
    freeze_embeddings: bool = field(default=True, metadata={
        "help": "with --freeze-layers: leave the embeddings trainable", "negative": "--no-freeze-embeddings"})
    eval_every: int = field(default=0, metadata={"help": "evaluate --eval every N steps (default: start and end)"})
    save_every: int = field(default=0, metadata={
        "help": "write full-state checkpoints/checkpoint-N every N steps, what --resume continues from (default 0: none)"})
    seed: int = field(default=0, metadata={"help": "data order and Trainer seed"})
    device: str = field(default="cpu", metadata={"help": "where to train", "choices": DEVICES})
    report_to: str = field(default="none", metadata={
        "help": "also log the training loss to an experiment tracker (wandb offline unless WANDB_MODE says "
                "otherwise); metrics.csv is written either way", "choices": TRACKERS})
    lora_rank: Optional[int] = field(default=None, metadata={
        "help": "train PEFT LoRA adapters of rank R on blocks >= --freeze-layers instead of the whole model "
                "(saves an adapter directory)", "metavar": "R"})
    lora_alpha: Optional[float] = field(default=None, metadata={
        "help": "LoRA scale numerator: the update is A/R * B A (default 2R)", "metavar": "A"})
    lora_modules: tuple[str, ...] = field(default=("all-linear",), metadata={
        "help": "the modules LoRA adapts, e.g. q_proj,v_proj (default: every linear layer of the blocks)",
        "parse": _names, "metavar": "NAME,NAME,..."})
    deepspeed: Optional[str] = field(default=None, metadata={
        "help": "train under DeepSpeed with this JSON config (ZeRO stage 0-2; launch with torchrun; the CPU works "
                "too, with gloo)", "metavar": "CONFIG.json"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "lora_modules", tuple(self.lora_modules))
        if self.freeze_layers is not None and self.freeze_layers < 0:
            raise UsageError(f"freeze_layers must be >= 0, got {self.freeze_layers}")
        if self.lora_rank is not None:
            if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or self.lora_rank < 1:
                raise UsageError(f"lora_rank must be an integer >= 1, got {self.lora_rank!r}")
            if self.lora_alpha is not None and not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
                raise UsageError(f"lora_alpha must be a positive number, got {self.lora_alpha}")
            if not self.lora_modules:
                raise UsageError("lora_modules names no module")
            if self.save_every:
                raise UsageError("--save-every with LoRA is not supported yet: checkpoints hold the full model state")
        elif self.lora_alpha is not None or self.lora_modules != ("all-linear",):
            raise UsageError("lora_alpha and lora_modules need lora_rank (--lora-rank R)")
        if self.deepspeed is not None and self.save_every:
            raise UsageError("--save-every with --deepspeed is not supported yet: DeepSpeed keeps its own checkpoint "
                             "format, which --resume does not read")
        for name in ("eval_every", "save_every"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.device not in DEVICES:
            raise UsageError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.report_to not in TRACKERS:
            raise UsageError(f"report_to must be one of {TRACKERS}, got {self.report_to!r}")

    def to_dict(self) -> dict[str, Any]:
        """Flat: the settings' fields and the others, as a ``--config`` file holds them."""
        flat = dataclasses.asdict(self.settings)
        flat.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "settings"})
        return flat

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: Optional["FinetuneOptions"] = None) -> "FinetuneOptions":
        """``base`` (default: the defaults) with the flat ``values`` of :meth:`to_dict` applied.

        Raises:
            UsageError: an unknown key, or a value out of range.
        """
        base = base or cls()
        own = {f.name for f in dataclasses.fields(cls)} - {"settings"}
        tuned = {f.name for f in dataclasses.fields(TrainSettings)}
        unknown = sorted(set(values) - own - tuned)
        if unknown:
            raise UsageError(f"unknown settings {unknown}; known: {sorted(own | tuned)}")
        settings = dataclasses.replace(base.settings, **{k: v for k, v in values.items() if k in tuned})
        return dataclasses.replace(base, settings=settings, **{k: v for k, v in values.items() if k in own})

    @classmethod
    def from_config_file(cls, path: str) -> "FinetuneOptions":
        """The options of a JSON config file (a flat object of :meth:`to_dict` keys).

        Raises:
            InvalidDataError: not JSON, not an object, unknown keys or bad values (named, with the file).
        """
        data = read_json_object(path, "config")
        try:
            return cls.from_dict(data)
        except UsageError as exc:
            raise InvalidDataError(f"config: {exc.reason}", path) from None
