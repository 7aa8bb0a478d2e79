"""Checkpoint chains with planted updates of known geometry."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file


def orthonormal(m: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(m, m, generator=g, dtype=dtype)).Q


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
