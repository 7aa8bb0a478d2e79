"""The tiny Llama of the Biography benchmark, built from a config.

Defaults are DESIGN.md's pilot: 4 blocks, hidden size 128, 4 heads, MLP width 4 × hidden,
untied embeddings (the LM head stays trainable when the embeddings are frozen). With the
~1.1k-word vocabulary that is about 1.3M parameters.
"""

from __future__ import annotations

from typing import Optional

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from ..errors import UsageError

__all__ = ["biography_config", "build_model", "count_parameters"]


def biography_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    num_layers: int = 4,
    hidden_size: int = 128,
    num_heads: int = 4,
    intermediate_size: Optional[int] = None,
    max_position_embeddings: int = 256,
) -> LlamaConfig:
    """A ``LlamaConfig`` sized for the Biography task, with the tokenizer's vocabulary and ids.

    Args:
        tokenizer: gives ``vocab_size`` (``len(tokenizer)``) and the pad/bos/eos ids.
        num_layers: transformer blocks.
        hidden_size: residual width; must be divisible by ``num_heads``.
        num_heads: attention heads (no grouped-query attention: kv heads = heads).
        intermediate_size: MLP width; default ``4 * hidden_size``.
        max_position_embeddings: longest sequence (biographies are ~65 tokens).
    """
    if hidden_size % num_heads:
        raise UsageError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=False,
    )


def build_model(config: LlamaConfig, *, seed: int) -> LlamaForCausalLM:
    """A freshly initialized ``LlamaForCausalLM`` (fp32, eval mode).

    The initialization draws from a forked torch RNG seeded with ``seed``: the same seed
    gives the same weights, and the global RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model.eval()


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (tied tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
