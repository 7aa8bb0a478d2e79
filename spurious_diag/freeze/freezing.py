"""Freeze the embeddings and blocks 0..n−1 of any HF causal LM, by exact block index.

Blocks are found by the layer map's anchored regex, never by substring:
``'layers.1' in name`` also matches ``layers.10``–``layers.19`` (the official
code of the paper has this bug: its "bottom 3" on a 12-layer model also froze
layers 10 and 11). Frozen parameters get ``requires_grad_(False)`` and must be
left out of the optimizer: zeroed gradients are not enough, since AdamW's
weight decay still moves them.

Naming (DESIGN.md §4): SEQ freezes nothing; Freeze(k) freezes the embeddings and
blocks 0..k−1, so Freeze(0) freezes the embeddings alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UsageError
from ..io.layer_map import num_layers_of, parse_param_name

__all__ = ["FreezeReport", "frozen_names", "freeze_bottom_layers", "remove_frozen_from_optimizer"]

logger = logging.getLogger(__name__)


@dataclass
class FreezeReport:
    """What :func:`freeze_bottom_layers` froze.

    Attributes:
        n: blocks frozen (0..n−1); embeddings: whether the embeddings were frozen.
        num_layers: blocks of the model.
        frozen: names of frozen parameters (one name per tensor; aliases in ``tied``).
        tied: frozen tensors shared under other names, e.g. ``{"model.embed_tokens.weight":
            ["lm_head.weight"]}`` when the LM head is tied to the embedding and so frozen too.
        frozen_params / total_params: element counts (each shared tensor counted once).
    """

    n: int
    embeddings: bool
    num_layers: int
    frozen: list[str] = field(default_factory=list)
    tied: dict[str, list[str]] = field(default_factory=dict)
    frozen_params: int = 0
    total_params: int = 0

    @property
    def trainable_params(self) -> int:
        return self.total_params - self.frozen_params

    @property
    def trainable_fraction(self) -> float:
        """Fraction of parameter elements left trainable, in [0, 1]."""
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def summary(self) -> str:
        """One line for logs."""
        what = ("embeddings + " if self.embeddings else "") + (f"blocks 0..{self.n - 1}" if self.n else "no blocks")
        tied = f"; tied and frozen too: {', '.join(a for v in self.tied.values() for a in v)}" if self.tied else ""
        return (f"froze {what} of {self.num_layers}: {len(self.frozen)} tensors, "
                f"{self.trainable_fraction:.1%} of {self.total_params:,} parameters trainable{tied}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "embeddings": self.embeddings, "num_layers": self.num_layers, "frozen": self.frozen,
            "tied": self.tied, "frozen_params": self.frozen_params, "total_params": self.total_params,
            "trainable_fraction": self.trainable_fraction,
        }


def _num_layers(model: torch.nn.Module, names: list[str]) -> int:
    found = num_layers_of(getattr(model, "config", None), names)
    if found is None:
        raise UsageError(f"{type(model).__name__}: no transformer blocks found in its parameter names")
    return found


def frozen_names(model: torch.nn.Module, n: int, embeddings: bool = True) -> list[str]:
    """Names (``named_parameters``, shared tensors once) that Freeze(n) freezes, in model order."""
    names = [name for name, _ in model.named_parameters()]
    num_layers = _num_layers(model, names)
    if not 0 <= n <= num_layers:
        raise UsageError(f"cannot freeze {n} blocks of a {num_layers}-block model")
    chosen = []
    for name in names:
        info = parse_param_name(name, num_layers)
        if info.layer is None:
            continue
        if (embeddings and info.layer == -1) or 0 <= info.layer < n and info.position == "block":
            chosen.append(name)
    return chosen


def freeze_bottom_layers(model: torch.nn.Module, n: int, embeddings: bool = True) -> FreezeReport:
    """Set ``requires_grad=False`` on exactly the embeddings (if ``embeddings``) and blocks 0..n−1.

    Every other parameter is set trainable. Tensors shared with a frozen one (a tied LM head)
    are frozen with it and reported in ``tied``. Build the optimizer *after* this call, from
    parameters with ``requires_grad`` only (HF ``Trainer`` does), or call
    :func:`remove_frozen_from_optimizer`.

    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=12,
    ...     num_attention_heads=2, num_key_value_heads=2, vocab_size=50))
    >>> report = freeze_bottom_layers(model, 2)
    >>> sorted({name.split(".")[2] for name in report.frozen if ".layers." in name})
    ['0', '1']
    """
    chosen = set(frozen_names(model, n, embeddings))
    all_named = list(model.named_parameters(remove_duplicate=False))
    num_layers = _num_layers(model, [name for name, _ in all_named])
    frozen_ids = {id(p) for name, p in all_named if name in chosen}
    report = FreezeReport(n=n, embeddings=embeddings, num_layers=num_layers)
    seen: dict[int, str] = {}
    for name, param in all_named:
        freeze = id(param) in frozen_ids
        param.requires_grad_(not freeze)
        if id(param) in seen:
            if freeze:
                report.tied.setdefault(seen[id(param)], []).append(name)
            continue
        seen[id(param)] = name
        report.total_params += param.numel()
        if freeze:
            report.frozen.append(name)
            report.frozen_params += param.numel()
    logger.info("%s", report.summary())
    return report


def remove_frozen_from_optimizer(optimizer: torch.optim.Optimizer) -> int:
    """Drop parameters with ``requires_grad=False`` from ``optimizer`` (groups and state).

    For freezing in the middle of training, after the optimizer was built. Returns how many
    tensors were removed. Works through wrappers that expose ``.optimizer`` (accelerate).
    """
    target: Any = optimizer
    while isinstance(getattr(target, "optimizer", None), torch.optim.Optimizer):
        target = target.optimizer
    removed = 0
    for group in target.param_groups:
        keep = []
        for p in group["params"]:
            if p.requires_grad:
                keep.append(p)
            else:
                target.state.pop(p, None)
                removed += 1
        group["params"] = keep
    return removed
