"""A planted checkpoint chain: a tiny Llama whose task updates have known geometry.

Task 0 changes every block by low-rank updates; Task 1 changes the embeddings
and the bottom half of the blocks in directions orthogonal to Task 0's (the
signature the paper finds behind spurious forgetting), and the top half
within Task 0's subspaces. An audit of the chain must find exactly that:
≈90° between the task updates at the bottom, ≈0° at the top. Nothing is
trained here; this is the geometry half of the demo, with ground truth.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

__all__ = ["write_planted_chain"]

_MODULES = ("self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")


def _orthonormal(m: int, generator: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(m, m, generator=generator, dtype=torch.float64)).Q


def _low_rank(u: torch.Tensor, n: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """scale · u diag(r, …, 1)/r vᵀ: column space exactly span(u) (m×r), v random (n×r)."""
    r = u.shape[1]
    v = _orthonormal(n, generator)[:, :r]
    s = torch.arange(r, 0, -1, dtype=torch.float64) / r
    return scale * (u * s) @ v.mT


def write_planted_chain(out_dir: str, *, seed: int = 0, num_layers: int = 4, hidden: int = 64, rank: int = 4,
                        vocab: int = 256, orthogonal_blocks: Optional[int] = None) -> list[str]:
    """Write ``base``, ``task0``, ``task1`` model dirs (float64 safetensors) under ``out_dir``.

    Args:
        seed: seed of the model init and of every planted direction.
        num_layers, hidden, vocab: size of the tiny Llama.
        rank: rank of each planted update.
        orthogonal_blocks: blocks 0..k−1 whose Task 1 update is orthogonal to Task 0's
            (default: the bottom half); the blocks above share Task 0's column space.

    Returns:
        The three directories, in chain order.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    k = num_layers // 2 if orthogonal_blocks is None else orthogonal_blocks
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=num_layers,
                         num_attention_heads=4, num_key_value_heads=4, vocab_size=vocab,
                         max_position_embeddings=64, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).to(torch.float64)
    base = {n: t.detach().clone() for n, t in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    task0, task1 = dict(base), {}
    targets = ["model.embed_tokens.weight"] + [f"model.layers.{b}.{m}.weight" for b in range(num_layers) for m in _MODULES]
    for name in targets:
        w = base[name]
        m, n = w.shape
        q = _orthonormal(m, g)
        block = -1 if "embed" in name else int(name.split(".")[2])
        scale = 0.05 * float(w.norm())
        task0[name] = w + _low_rank(q[:, :rank], n, scale, g)
        bottom = block < k
        # Task 1: orthogonal directions at the bottom (and bigger), shared subspace at the top
        u1 = q[:, rank : 2 * rank] if bottom else q[:, :rank]
        task1[name] = task0[name] + _low_rank(u1, n, scale * (2.0 if bottom else 0.5), g)
    dirs = []
    for label, state in (("base", base), ("task0", task0), ("task1", {**task0, **task1})):
        path = os.path.join(out_dir, label)
        model.load_state_dict(state)
        model.save_pretrained(path)
        dirs.append(path)
    return dirs
