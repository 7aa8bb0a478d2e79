"""Load the causal LMs the probes compare, from a model object or an HF model directory."""

from __future__ import annotations

import logging
import os
from typing import Optional, Union

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import CheckpointNotFoundError, UnsupportedFormatError, UsageError

__all__ = ["ModelArg", "load_adapted_lm", "load_causal_lm", "load_tokenizer_for", "model_label"]

logger = logging.getLogger(__name__)

ModelArg = Union[PreTrainedModel, str, "os.PathLike[str]"]


def load_adapted_lm(adapter_dir: str, base: ModelArg, *, dtype: torch.dtype = torch.float32,
                    device: str = "cpu") -> PreTrainedModel:
    """A PEFT LoRA adapter directory applied to ``base`` and merged: the dense model it trained.

    ``base`` is loaded afresh from its directory (or deep-copied when an object), never changed.

    Raises:
        UsageError: PEFT is not installed.
        UnsupportedFormatError: the adapter does not fit the base.
    """
    import copy

    try:
        from peft import PeftModel
    except ImportError:
        raise UsageError("an adapter directory as a model needs PEFT: pip install peft", adapter_dir) from None
    base_model = copy.deepcopy(base) if isinstance(base, torch.nn.Module) else load_causal_lm(base, dtype=dtype)
    try:
        merged = PeftModel.from_pretrained(base_model, os.fspath(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UnsupportedFormatError(f"cannot apply the adapter to its base ({type(exc).__name__}: {exc})",
                                     adapter_dir) from None
    logger.info("%s: a LoRA adapter, merged into its base for the probes", adapter_dir)
    return merged.to(device=device, dtype=dtype).eval()


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
