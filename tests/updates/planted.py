"""Checkpoint chains with planted updates of known geometry.

:func:`write_planted_chain` writes a tiny Llama whose task updates have known geometry: Task 0
changes every block by low-rank updates; Task 1 changes the embeddings and the bottom half of
the blocks in directions orthogonal to Task 0's (the signature the paper finds behind spurious
forgetting), and the top half within Task 0's subspaces. An audit of the chain must find exactly
that: ≈90° between the task updates at the bottom, ≈0° at the top. Nothing is trained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file

_MODULES = ("self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj", "mlp.down_proj")


def random_orthonormal(m: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """An m×m orthonormal matrix drawn from ``generator`` (QR of a Gaussian matrix)."""
    return torch.linalg.qr(torch.randn(m, m, generator=generator, dtype=dtype)).Q


def orthonormal(m: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return random_orthonormal(m, torch.Generator().manual_seed(seed), dtype)


# Planted pairs of rank-8 updates (the noise-floor tests and ``benchmarks/bench_noise_floor.py --planted``).
PAIR_ANGLES = torch.linspace(10, 80, 8, dtype=torch.float64)  # degrees between the two planted subspaces
PAIR_SIGMAS = torch.linspace(1.0, 0.5, 8, dtype=torch.float64)  # the planted singular values, relative


def synthetic_weight(m: int, n: int, seed: int = 0) -> torch.Tensor:
    """m×n float64 weights whose rows and columns vary in scale (log-normal, σ = 0.5), as real ones do."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.exp(0.5 * torch.randn(m, 1, generator=g, dtype=torch.float64))
    cols = torch.exp(0.5 * torch.randn(1, n, generator=g, dtype=torch.float64))
    return 0.02 * torch.randn(m, n, generator=g, dtype=torch.float64) * rows * cols


def planted_pair(w0: torch.Tensor, rel: float, angles_deg: torch.Tensor = PAIR_ANGLES,
                 seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rank-8 float64 updates of ``w0`` (m×n), each of ‖ΔW‖_F / ‖W‖_F = ``rel``, singular values
    ∝ :data:`PAIR_SIGMAS`, whose left subspaces meet at principal angles ``angles_deg`` (8 values)
    and whose right subspaces are orthogonal."""
    m, n = w0.shape
    g = torch.Generator().manual_seed(seed)
    q, v = random_orthonormal(m, g), random_orthonormal(n, g)
    theta = torch.deg2rad(torch.as_tensor(angles_deg, dtype=torch.float64))
    u_a = q[:, :8]
    u_b = u_a * torch.cos(theta) + q[:, 8:16] * torch.sin(theta)
    d_a, d_b = (u_a * PAIR_SIGMAS) @ v[:, :8].T, (u_b * PAIR_SIGMAS) @ v[:, 8:16].T
    scale = rel * float(w0.double().norm()) / float(d_a.norm())
    return d_a * scale, d_b * scale


PAIR_NAME = "model.layers.0.self_attn.q_proj.weight"


def stored_pair_chain(w0: torch.Tensor, rel: float, dtype: torch.dtype, angles_deg: torch.Tensor = PAIR_ANGLES,
                      seed: int = 1) -> list[dict[str, torch.Tensor]]:
    """base, base + A, base + B (:func:`planted_pair`) as one-tensor state dicts, each stored in ``dtype``
    (the updates are added to the stored base in float64, then rounded): audit them with ``base=True``."""
    d_a, d_b = planted_pair(w0, rel, angles_deg, seed)
    base = w0.to(dtype)
    return [{PAIR_NAME: base}, {PAIR_NAME: (base.double() + d_a).to(dtype)}, {PAIR_NAME: (base.double() + d_b).to(dtype)}]


def b1_chain() -> list[dict[str, torch.Tensor]]:
    """Issue 14's B1: a chain of 64×64 float32 checkpoints whose two rank-4 updates (relative size 1e-4)
    share their left subspace (overlap 1)."""
    g = torch.Generator().manual_seed(0)
    w0 = (0.02 * torch.randn(64, 64, generator=g, dtype=torch.float64)).float()
    q, v = random_orthonormal(64, g), random_orthonormal(64, g)
    d1 = q[:, :4] @ v[:, :4].T
    d2 = q[:, :4] @ v[:, 4:8].T  # the same left subspace: overlap 1
    scale = 1e-4 * float(w0.norm()) / float(d1.norm())
    return [{PAIR_NAME: w0}, {PAIR_NAME: (w0.double() + scale * d1).float()},
            {PAIR_NAME: (w0.double() + scale * (d1 + d2)).float()}]


def low_rank(u: torch.Tensor, n: int, seed: int, scale: float = 1e-2) -> torch.Tensor:
    """scale · u @ diag(r..1) @ vᵀ with v random orthonormal (n×r): column space exactly span(u)."""
    r = u.shape[1]
    v = orthonormal(n, seed)[:, :r]
    s = torch.arange(r, 0, -1, dtype=u.dtype)
    return scale * (u * s) @ v.mT


def save_state(state: dict, like_dir: Path, out: Path) -> Path:
    """Save ``state`` as ``model.safetensors`` with the config of ``like_dir``."""
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, out / "model.safetensors")
    (out / "config.json").write_text((like_dir / "config.json").read_text())
    return out


def write_lora_adapter(out: Path, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], alpha: float, r: int) -> Path:
    """A PEFT-format LoRA adapter dir: base weight name → (B: out×r, A: r×in)."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for base_name, (B, A) in factors.items():
        stem = "base_model.model." + base_name[: -len(".weight")]
        tensors[f"{stem}.lora_A.weight"] = A.contiguous()
        tensors[f"{stem}.lora_B.weight"] = B.contiguous()
    save_file(tensors, out / "adapter_model.safetensors")
    (out / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "tiny-llama",
    }))
    return out


def _scaled_low_rank(u: torch.Tensor, n: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """scale · u diag(r, …, 1)/r vᵀ: column space exactly span(u) (m×r), v random (n×r)."""
    r = u.shape[1]
    v = random_orthonormal(n, generator)[:, :r]
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
    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=num_layers,
                         num_attention_heads=4, num_key_value_heads=4, vocab_size=vocab,
                         max_position_embeddings=64, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float64)
    base = {n: t.detach().clone() for n, t in model.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 1)
    task0, task1 = dict(base), {}
    targets = ["model.embed_tokens.weight"] + [f"model.layers.{b}.{m}.weight" for b in range(num_layers) for m in _MODULES]
    for name in targets:
        w = base[name]
        m, n = w.shape
        q = random_orthonormal(m, g)
        block = -1 if "embed" in name else int(name.split(".")[2])
        scale = 0.05 * float(w.norm())
        task0[name] = w + _scaled_low_rank(q[:, :rank], n, scale, g)
        bottom = block < k
        # Task 1: orthogonal directions at the bottom (and bigger), shared subspace at the top
        u1 = q[:, rank : 2 * rank] if bottom else q[:, :rank]
        task1[name] = task0[name] + _scaled_low_rank(u1, n, scale * (2.0 if bottom else 0.5), g)
    dirs = []
    for label, state in (("base", base), ("task0", task0), ("task1", {**task0, **task1})):
        path = os.path.join(out_dir, label)
        model.load_state_dict(state)
        model.save_pretrained(path)
        dirs.append(path)
    return dirs
