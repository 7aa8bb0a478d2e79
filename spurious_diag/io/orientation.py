"""Orientation rules: which axis of a stored weight is its output, and how fused projections split.

Every update is compared in (out, in) orientation, output axis first, so that
left singular vectors live in the module's output space for every
architecture (DESIGN.md §2). GPT-2 ``Conv1D`` stores (in, out) and is
transposed. Fused projections are split into parts along the output axis:
GPT-2 ``c_attn`` and Phi-3 ``qkv_proj`` / ``gate_up_proj`` as contiguous
blocks, GPT-NeoX ``query_key_value`` interleaved per head as
(heads, 3, head_dim).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch

from .layer_map import ParamInfo

__all__ = ["Part", "output_axis", "split_parts", "PART_MODULES"]

PART_MODULES = {
    "q": "attn.q_proj",
    "k": "attn.k_proj",
    "v": "attn.v_proj",
    "gate": "mlp.gate_proj",
    "up": "mlp.up_proj",
}


@dataclass(frozen=True)
class Part:
    """One analysable piece of a stored tensor.

    Attributes:
        part: ``q``/``k``/``v``/``gate``/``up`` for a split fused tensor, ``""`` for a whole tensor.
        module: the normalized module of this piece (``attn.k_proj`` for the k rows of a fused QKV).
        index: positions along the output axis (a ``slice`` or a 1-D ``LongTensor``).
    """

    part: str
    module: str
    index: Union[slice, torch.Tensor]


def output_axis(info: ParamInfo, ndim: int) -> int:
    """The stored axis that is the module's output: 1 for a GPT-2 Conv1D weight, else 0."""
    return 1 if info.transposed and ndim == 2 else 0


def _get(config: Optional[Mapping[str, Any]], *keys: str) -> Optional[int]:
    if not config:
        return None
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    text = config.get("text_config")
    return _get(text, *keys) if isinstance(text, Mapping) else None


def split_parts(info: ParamInfo, out_features: int, config: Optional[Mapping[str, Any]] = None) -> list[Part]:
    """The parts of a tensor along its output axis of length ``out_features``.

    Unfused tensors give one whole part. A fused tensor whose size does not fit the
    config's head counts is left whole too (its ``part`` is ``""``), never split wrongly.

    >>> from spurious_diag.io.layer_map import parse_param_name
    >>> [p.part for p in split_parts(parse_param_name("transformer.h.0.attn.c_attn.weight"), 96)]
    ['q', 'k', 'v']
    """
    whole = [Part("", info.module, slice(0, out_features))]
    if info.fused is None:
        return whole
    heads = _get(config, "num_attention_heads", "n_head")
    if info.fused == "interleaved_per_head":
        if not heads or out_features % (3 * heads):
            return whole
        head_dim = out_features // (3 * heads)
        grid = torch.arange(out_features).view(heads, 3, head_dim)
        return [Part(p, PART_MODULES[p], grid[:, k, :].reshape(-1)) for k, p in enumerate(info.parts)]
    # contiguous blocks
    if info.parts == ("gate", "up"):
        if out_features % 2:
            return whole
        sizes = [out_features // 2] * 2
    else:
        kv_heads = _get(config, "num_key_value_heads", "n_head_kv") or heads
        head_dim = _get(config, "head_dim")
        hidden = _get(config, "hidden_size", "n_embd")
        if head_dim is None and heads and hidden:
            head_dim = hidden // heads
        if heads and kv_heads and head_dim and heads * head_dim + 2 * kv_heads * head_dim == out_features:
            sizes = [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim]
        elif out_features % 3 == 0:
            sizes = [out_features // 3] * 3
        else:
            return whole
    parts, start = [], 0
    for p, size in zip(info.parts, sizes):
        parts.append(Part(p, PART_MODULES[p], slice(start, start + size)))
        start += size
    return parts
