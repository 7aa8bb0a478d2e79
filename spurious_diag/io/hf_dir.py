"""Find the weight files of a checkpoint path and read its config.

A checkpoint is one of (DESIGN.md §1): an HF model directory (single or
sharded safetensors, or ``.bin``, sharded too), a bare ``.safetensors`` file, a
``.bin`` file or a ``.gguf`` file. This module decides which files to read and
validates shard indexes; it never opens a file for writing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import CheckpointNotFoundError, CorruptCheckpointError, MissingShardError, NoWeightsError

__all__ = ["WeightFiles", "find_weight_files", "read_config", "require_nonempty_file"]

# Candidates in order of preference: (index file, single file, format).
_HF_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors", "safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin", "bin"),
    (None, "adapter_model.safetensors", "safetensors"),
    (None, "adapter_model.bin", "bin"),
)


@dataclass
class WeightFiles:
    """The files behind one checkpoint.

    Attributes:
        root: the directory (or the file itself, for a bare file).
        format: ``safetensors``, ``bin`` or ``gguf``.
        files: the weight files, in reading order.
        index: for a sharded checkpoint, tensor name → file, from the index JSON.
        index_path: the index JSON, when sharded.
    """

    root: str
    format: str
    files: list[str]
    index: Optional[dict[str, str]] = None
    index_path: Optional[str] = None
    config: Optional[dict[str, Any]] = field(default=None)


def require_nonempty_file(path: str) -> None:
    """Raise the package's error for a missing or zero-length weight file."""
    if not os.path.exists(path):
        raise CheckpointNotFoundError("no such file", path)
    if os.path.getsize(path) == 0:
        raise CorruptCheckpointError("file is empty (0 bytes)", path)


def _format_of_file(path: str) -> Optional[str]:
    lower = path.lower()
    if lower.endswith(".safetensors"):
        return "safetensors"
    if lower.endswith((".bin", ".pt", ".pth")):
        return "bin"
    if lower.endswith(".gguf"):
        return "gguf"
    return None


def read_config(directory: str) -> Optional[dict[str, Any]]:
    """``config.json`` (or ``adapter_config.json``) of ``directory`` as a dict, or ``None``."""
    for name in ("config.json", "adapter_config.json"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CorruptCheckpointError(f"invalid JSON ({type(exc).__name__}: {exc})", path) from None
            if not isinstance(data, dict):
                raise CorruptCheckpointError("config is not a JSON object", path)
            return data
    return None


def _read_index(index_path: str) -> dict[str, str]:
    try:
        with open(index_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpointError(f"invalid shard index ({type(exc).__name__}: {exc})", index_path) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CorruptCheckpointError("shard index has no valid 'weight_map'", index_path)
    return weight_map


def find_weight_files(path: str) -> WeightFiles:
    """Resolve ``path`` to the weight files to read.

    Raises:
        CheckpointNotFoundError: the path does not exist, or is an empty directory.
        NoWeightsError: a directory with files but none the package can read.
        MissingShardError: a shard index names a file that is not in the directory.
        CorruptCheckpointError: a shard index is not valid JSON.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError("no such file or directory", path)
    if os.path.isfile(path):
        fmt = _format_of_file(path)
        if fmt is None:
            raise NoWeightsError("not a weight file (expected .safetensors, .bin or .gguf)", path)
        return WeightFiles(os.path.dirname(path) or ".", fmt, [path])

    try:
        entries = sorted(os.listdir(path))
    except PermissionError:
        raise CheckpointNotFoundError("directory is not readable", path) from None
    if not entries:
        raise CheckpointNotFoundError("directory is empty", path)
    config = read_config(path)

    for index_name, single_name, fmt in _HF_LAYOUTS:
        if index_name is not None and index_name in entries:
            index_path = os.path.join(path, index_name)
            weight_map = _read_index(index_path)
            shards = list(dict.fromkeys(weight_map.values()))
            for shard in shards:
                if os.path.basename(shard) != shard or not os.path.isfile(os.path.join(path, shard)):
                    raise MissingShardError(f"index names shard '{shard}', which is not in the directory", index_path)
            return WeightFiles(path, fmt, [os.path.join(path, s) for s in shards], weight_map, index_path, config)
        if single_name in entries:
            return WeightFiles(path, fmt, [os.path.join(path, single_name)], config=config)

    # A directory holding exactly one weight file of any name (e.g. a bare export).
    loose = [e for e in entries if _format_of_file(e) is not None and os.path.isfile(os.path.join(path, e))]
    if len(loose) == 1:
        return WeightFiles(path, _format_of_file(loose[0]) or "", [os.path.join(path, loose[0])], config=config)
    if len(loose) > 1:
        raise NoWeightsError(
            f"several weight files and no index to say how they fit ({', '.join(loose[:4])}...): pass one file", path
        )
    raise NoWeightsError(
        "no weights found (expected model.safetensors, a shard index, pytorch_model.bin or a .gguf file)", path
    )
