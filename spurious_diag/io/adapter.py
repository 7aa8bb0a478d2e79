"""PEFT LoRA adapter directories: the factors of each adapted weight and their scale.

An adapter's update to base weight W is ΔW = scale · B @ A with
B = ``lora_B.weight`` (out×r), A = ``lora_A.weight`` (r×in) and
scale = lora_alpha / r (lora_alpha / √r with rsLoRA; per-module values from
``rank_pattern`` / ``alpha_pattern``). This module only reads: it returns the
factors, and the update math lives in ``geometry.FactoredUpdate``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..errors import CorruptCheckpointError, MismatchError
from .checkpoint import Checkpoint
from .hf_dir import read_config
from .loader import load_checkpoint

__all__ = ["LoraAdapter", "is_lora_adapter", "load_lora_adapter"]

_FACTOR = re.compile(r"^(?P<base>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")
_PEFT_PREFIX = "base_model.model."


def is_lora_adapter(path: str) -> bool:
    """True for a directory holding a PEFT ``adapter_config.json`` of type LORA."""
    cfg_path = os.path.join(os.fspath(path), "adapter_config.json")
    if not os.path.isfile(cfg_path):
        return False
    config = read_config(os.fspath(path)) or {}
    return str(config.get("peft_type", "LORA")).upper() == "LORA"


@dataclass
class LoraAdapter:
    """A LoRA adapter: base weight name → (A name, B name) in ``checkpoint``.

    Attributes:
        path: the adapter directory.
        checkpoint: the lazy mapping over ``adapter_model.safetensors`` (or ``.bin``).
        factors: base weight name (as the base model stores it) → (lora_A name, lora_B name).
        config: ``adapter_config.json``.
        other: stored names that are not LoRA factors (e.g. ``modules_to_save`` copies).
    """

    path: str
    checkpoint: Checkpoint
    factors: dict[str, tuple[str, str]]
    config: dict[str, Any]
    other: list[str]

    def scale(self, base_name: str) -> float:
        """lora_alpha / r for ``base_name`` (rsLoRA: / √r), honouring rank and alpha patterns."""
        a_name, _ = self.factors[base_name]
        r = self.checkpoint.info(a_name).shape[0]
        alpha = float(self.config.get("lora_alpha", r))
        module = base_name[: -len(".weight")]
        for pattern, value in (self.config.get("alpha_pattern") or {}).items():
            if re.search(rf"(^|\.){pattern}$", module):
                alpha = float(value)
        return alpha / (math.sqrt(r) if self.config.get("use_rslora") else r)

    def factor_tensors(self, base_name: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(B: out×r, A: r×in, scale) for the base weight ``base_name``."""
        a_name, b_name = self.factors[base_name]
        return self.checkpoint[b_name], self.checkpoint[a_name], self.scale(base_name)


def load_lora_adapter(path: str) -> LoraAdapter:
    """Open a PEFT LoRA adapter directory lazily.

    Raises:
        CorruptCheckpointError: a ``lora_A`` without its ``lora_B`` (or the reverse).
        MismatchError: factors whose ranks disagree.
    """
    path = os.fspath(path)
    ckpt = load_checkpoint(path)
    config: Mapping[str, Any] = read_config(path) or {}
    pairs: dict[str, dict[str, str]] = {}
    other: list[str] = []
    for name in ckpt:
        match = _FACTOR.match(name)
        if match is None:
            other.append(name)
            continue
        base = match.group("base")
        if base.startswith(_PEFT_PREFIX):
            base = base[len(_PEFT_PREFIX):]
        pairs.setdefault(base + ".weight", {})[match.group("which")] = name
    factors: dict[str, tuple[str, str]] = {}
    for base_name, found in pairs.items():
        if set(found) != {"A", "B"}:
            missing = "lora_B" if "A" in found else "lora_A"
            raise CorruptCheckpointError(f"{missing} factor missing", path, base_name)
        a_shape, b_shape = ckpt.info(found["A"]).shape, ckpt.info(found["B"]).shape
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise MismatchError(f"LoRA factors do not chain: A {a_shape}, B {b_shape}", path, base_name)
        factors[base_name] = (found["A"], found["B"])
    return LoraAdapter(path, ckpt, factors, dict(config), other)

