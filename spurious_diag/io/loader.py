"""``load_checkpoint``: one entry point for every checkpoint source."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Union

import torch

from ..errors import MissingShardError
from .checkpoint import Checkpoint, TensorReader
from .hf_dir import find_weight_files
from .in_memory import StateDictReader

__all__ = ["load_checkpoint", "CheckpointSource"]

logger = logging.getLogger(__name__)

CheckpointSource = Union[str, "os.PathLike[str]", Checkpoint, torch.nn.Module, Mapping]


def load_checkpoint(source: CheckpointSource) -> Checkpoint:
    """Open a checkpoint lazily, as a read-only ``Mapping[str, torch.Tensor]``.

    Args:
        source: an HF model directory (``model.safetensors``, sharded safetensors
            with ``model.safetensors.index.json``, ``pytorch_model.bin`` or its shards,
            a PEFT ``adapter_model.safetensors``), a bare ``.safetensors`` / ``.bin`` /
            ``.gguf`` file, an ``nn.Module``, a state dict, or a :class:`Checkpoint`
            (returned as is).

    Returns:
        A :class:`Checkpoint`. Names, shapes and dtypes come from headers alone;
        ``ckpt[name]`` reads one tensor. Tied weights appear once, under the stored
        name, with their aliases in ``ckpt.tied``.

    Raises:
        CheckpointNotFoundError, NoWeightsError, MissingShardError: nothing to load.
        CorruptCheckpointError: a file that cannot be parsed.
        UnsupportedFormatError: a GGUF architecture transformers cannot map.

    >>> import torch
    >>> ckpt = load_checkpoint({"w": torch.zeros(2, 3)})
    >>> ckpt.info("w").shape
    (2, 3)
    """
    if isinstance(source, Checkpoint):
        return source
    if isinstance(source, torch.nn.Module):
        reader = StateDictReader.from_module(source)
        config = source.config.to_dict() if hasattr(getattr(source, "config", None), "to_dict") else None
        return Checkpoint(reader.path, "module", [reader], config=config, tied=_alias_map(reader.aliases))
    if isinstance(source, Mapping):
        reader = StateDictReader(source)
        return Checkpoint(reader.path, "state_dict", [reader], tied=_alias_map(reader.aliases))
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"cannot load a checkpoint from a {type(source).__name__}")
    return _load_path(os.fspath(source))


def _alias_map(aliases: Mapping[str, list[str]]) -> dict[str, tuple[str, ...]]:
    return {stored: tuple(names) for stored, names in aliases.items()}


def _load_path(path: str) -> Checkpoint:
    found = find_weight_files(path)
    readers: list[TensorReader]
    if found.format == "gguf":
        from .gguf_file import GGUFFile

        gguf = GGUFFile(found.files[0])
        return Checkpoint(path, "gguf", [gguf], config=gguf.config, tied=gguf.tied)
    if found.format == "safetensors":
        from .safetensors_file import SafetensorsFile

        readers = [SafetensorsFile(f) for f in found.files]
    else:
        from .torch_bin import TorchBinFile

        readers = [TorchBinFile(f) for f in found.files]
    if found.index is not None:
        _check_index(found.index, found.index_path or path, readers)
    tied: dict[str, tuple[str, ...]] = {}
    for reader in readers:
        tied.update(_alias_map(getattr(reader, "aliases", {})))
    ckpt = Checkpoint(path, found.format, readers, config=found.config, tied=tied)
    _add_config_ties(ckpt)
    return ckpt


def _check_index(index: Mapping[str, str], index_path: str, readers: list[TensorReader]) -> None:
    by_file = {os.path.basename(r.path): r.infos() for r in readers}
    for name, shard in index.items():
        if name not in by_file.get(shard, {}):
            raise MissingShardError(f"index names tensor '{name}' in '{shard}', which does not hold it", index_path, name)


# Where the LM head lives when it is tied to the input embedding.
_HEAD_FOR_EMBED = {
    "gpt_neox.embed_in.weight": "embed_out.weight",
}


def _ties_by_default(config: Mapping[str, Any]) -> bool:
    value = config.get("tie_word_embeddings")
    if isinstance(value, bool):
        return value
    text = config.get("text_config")
    if isinstance(text, Mapping) and isinstance(text.get("tie_word_embeddings"), bool):
        return bool(text["tie_word_embeddings"])
    model_type = config.get("model_type")
    if not isinstance(model_type, str):
        return False
    try:
        from transformers import AutoConfig

        return bool(AutoConfig.for_model(model_type).tie_word_embeddings)
    except Exception:  # unknown model type: don't invent a tie
        return False


def _add_config_ties(ckpt: Checkpoint) -> None:
    """Record the LM head as an alias of the embedding when the config ties them and the head is not stored."""
    if ckpt.config is None:
        return
    embeds = [n for n in ckpt if ckpt.param_info(n).module == "embed_tokens" and n.endswith(".weight")]
    if len(embeds) != 1 or any(ckpt.param_info(n).module == "lm_head" for n in ckpt):
        return
    if any(embeds[0] in stored or embeds[0] in aliases for stored, aliases in ckpt.tied.items()):
        return
    if not _ties_by_default(ckpt.config):
        return
    prefix = embeds[0].split("model.", 1)[0] if embeds[0].startswith("base_model.") else ""
    head = _HEAD_FOR_EMBED.get(embeds[0], prefix + "lm_head.weight")
    ckpt.tied = {**ckpt.tied, embeds[0]: (head,)}
    logger.debug("%s: %s is tied to %s (config)", ckpt.path, head, embeds[0])
