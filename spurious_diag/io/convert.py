"""Convert a GGUF or ``.bin`` checkpoint into an HF safetensors model directory."""

from __future__ import annotations

import logging
import os
import shutil

import torch

from ..errors import UnsupportedFormatError
from ..outputs import staged_dir
from .hf_dir import find_weight_files

__all__ = ["convert_checkpoint"]

logger = logging.getLogger(__name__)

# Files that travel with the weights when converting an HF directory.
_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)


def convert_checkpoint(src: str, out_dir: str, overwrite: bool = False) -> str:
    """Write ``src`` as an HF directory of safetensors that ``from_pretrained`` loads.

    Args:
        src: a ``.gguf`` file, a ``.bin`` file, or an HF directory holding ``.bin`` weights.
        out_dir: the directory to create. Built under a temporary name and renamed
            into place, so a failed conversion leaves nothing behind.
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        ``out_dir``.

    GGUF files go through transformers' own GGUF loader (dequantized to float32),
    with the tokenizer; ``.bin`` directories are re-saved by transformers when they
    have a ``config.json``. The source is only read.
    """
    found = find_weight_files(src)
    with staged_dir(out_dir, overwrite) as staging:
        if found.format == "gguf":
            _convert_gguf(found.files[0], staging)
        elif found.format == "bin":
            _convert_bin(src, found.root if os.path.isdir(src) else None, found.files, staging)
        else:
            raise UnsupportedFormatError("already safetensors; nothing to convert", src)
    logger.info("converted %s -> %s", src, out_dir)
    return out_dir


def _convert_gguf(path: str, staging: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .gguf_file import GGUFFile

    GGUFFile(path)  # validates the file with a clear error before transformers sees it
    directory, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model while it still carries its
    # quantizer; the weights are already dequantized, so both can go.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        tokenizer.save_pretrained(staging)
    except Exception as exc:  # a model without a usable tokenizer still converts
        logger.warning("%s: tokenizer not converted (%s)", path, exc)


def _convert_bin(src: str, directory: str | None, files: list[str], staging: str) -> None:
    if directory is not None and os.path.isfile(os.path.join(directory, "config.json")):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(directory, dtype="auto")
        model.save_pretrained(staging)
        for side in _SIDE_FILES[1:]:
            if os.path.isfile(os.path.join(directory, side)):
                shutil.copy2(os.path.join(directory, side), os.path.join(staging, side))
        return
    from safetensors.torch import save_file

    from .loader import load_checkpoint

    ckpt = load_checkpoint(files[0] if len(files) == 1 else src)
    tensors = {name: ckpt[name].contiguous() for name in ckpt}
    save_file(tensors, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
