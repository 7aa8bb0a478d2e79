"""Load the causal LMs the probes compare, from a model object or an HF model directory."""

from __future__ import annotations

import logging
import os
from typing import Optional, Union

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import CheckpointNotFoundError, UnsupportedFormatError

__all__ = ["ModelArg", "load_causal_lm", "load_tokenizer_for", "model_label"]

logger = logging.getLogger(__name__)

ModelArg = Union[PreTrainedModel, str, "os.PathLike[str]"]


def load_causal_lm(model: ModelArg, *, dtype: torch.dtype = torch.float32, device: str = "cpu") -> PreTrainedModel:
    """A model object as is, or an HF causal LM directory loaded offline (``dtype``, eval mode).

    Raises:
        CheckpointNotFoundError: the path does not exist or has no ``config.json``.
        UnsupportedFormatError: transformers cannot load it as a causal LM.
    """
    if isinstance(model, torch.nn.Module):
        return model
    path = os.fspath(model)
    if not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
        raise CheckpointNotFoundError("not an HF model directory (no config.json)", path)
    from transformers import AutoModelForCausalLM

    try:
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UnsupportedFormatError(f"cannot load as a causal LM ({type(exc).__name__}: {exc})", path) from None
    return loaded.to(device).eval()


def load_tokenizer_for(*paths: Optional[ModelArg]) -> PreTrainedTokenizerBase:
    """The tokenizer saved in the first of ``paths`` that is a directory holding one.

    Raises:
        CheckpointNotFoundError: none of them holds a tokenizer.
    """
    from transformers import AutoTokenizer

    tried = []
    for p in paths:
        if p is None or isinstance(p, torch.nn.Module):
            continue
        path = os.fspath(p)
        tried.append(path)
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json",
                                                                   "tokenizer.model", "vocab.json")):
            continue
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            logger.warning("cannot load the tokenizer in %s: %s", path, exc)
            continue
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    raise CheckpointNotFoundError("no tokenizer found (pass tokenizer=...)", ", ".join(tried) or None)


def model_label(model: ModelArg) -> str:
    """A short name for reports: the directory name, or the model class."""
    if isinstance(model, torch.nn.Module):
        return type(model).__name__
    return os.path.basename(os.path.normpath(os.fspath(model))) or os.fspath(model)
