"""Lazy reader of one ``.safetensors`` file.

The header is parsed and validated here (length, JSON, dtypes, shapes and
byte offsets against the file size) so a truncated or corrupt file fails with
:class:`CorruptCheckpointError` naming the file, before any tensor is read.
Tensor data is then read one tensor at a time through ``safetensors.safe_open``
(memory-mapped, read-only).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import torch

from ..errors import CheckpointNotFoundError, CorruptCheckpointError
from .checkpoint import TensorInfo

__all__ = ["SafetensorsFile", "read_safetensors_header", "SAFETENSORS_DTYPES"]

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16,
    "U32": torch.uint32,
    "U64": torch.uint64,
}

# The format caps the header at 100 MB; a bigger length is a corrupt file.
_MAX_HEADER = 100_000_000


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def read_safetensors_header(path: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate the header of a safetensors file.

    Returns:
        (infos, metadata): name → :class:`TensorInfo` in data order, and the
        ``__metadata__`` string map (empty if absent).

    Raises:
        CheckpointNotFoundError: ``path`` does not exist.
        CorruptCheckpointError: the file is too short, the header length or JSON is
            invalid, or a tensor's dtype, shape or byte range is inconsistent.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CorruptCheckpointError(f"file is {size} bytes, too short for a safetensors header", path)
            (n,) = struct.unpack("<Q", prefix)
            if n > _MAX_HEADER or 8 + n > size:
                raise CorruptCheckpointError(
                    f"header length {n} does not fit in a file of {size} bytes (truncated or not safetensors)", path
                )
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointNotFoundError("no such file", path) from None
    except IsADirectoryError:
        raise CorruptCheckpointError("is a directory, expected a .safetensors file", path) from None
    except PermissionError:
        raise CheckpointNotFoundError("permission denied", path) from None
    try:
        header: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptCheckpointError(f"header is not valid JSON ({type(exc).__name__})", path) from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError("header is not a JSON object", path)

    data_size = size - 8 - n
    metadata_raw = header.pop("__metadata__", None) or {}
    metadata = {str(k): str(v) for k, v in metadata_raw.items()} if isinstance(metadata_raw, dict) else {}
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        infos[name] = _validate_entry(path, name, entry, data_size)
    return infos, metadata


def _validate_entry(path: str, name: str, entry: Any, data_size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise CorruptCheckpointError("header entry is not an object", path, name)
    dtype = SAFETENSORS_DTYPES.get(entry.get("dtype")) if isinstance(entry.get("dtype"), str) else None
    if dtype is None:
        raise CorruptCheckpointError(f"unknown dtype {entry.get('dtype')!r}", path, name)
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise CorruptCheckpointError(f"invalid shape {shape!r}", path, name)
    offsets = entry.get("data_offsets")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise CorruptCheckpointError(f"invalid data_offsets {offsets!r}", path, name)
    begin, end = offsets
    numel = 1
    for d in shape:
        numel *= d
    expected = numel * _element_size(dtype)
    if begin < 0 or end < begin or end - begin != expected:
        raise CorruptCheckpointError(
            f"data_offsets {offsets} do not hold {expected} bytes for shape {shape} {entry['dtype']}", path, name
        )
    if end > data_size:
        raise CorruptCheckpointError(
            f"data ends at byte {end} but the file holds only {data_size} data bytes (truncated)", path, name
        )
    return TensorInfo(name, tuple(shape), dtype, path)


class SafetensorsFile:
    """A :class:`~spurious_diag.io.checkpoint.TensorReader` over one safetensors file.

    Supports :meth:`load_rows`: a slice of rows is read without the rest of the tensor.
    """

    def __init__(self, path: str):
        self.path = str(path)
        self._infos, self.metadata = read_safetensors_header(self.path)

    def infos(self) -> dict[str, TensorInfo]:
        return dict(self._infos)

    def load(self, name: str) -> torch.Tensor:
        if name not in self._infos:
            raise KeyError(name)
        return self._read(name, None)

    def load_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of tensor ``name`` (its first axis), read alone."""
        if name not in self._infos:
            raise KeyError(name)
        return self._read(name, (start, stop))

    def _read(self, name: str, rows: "tuple[int, int] | None") -> torch.Tensor:
        from safetensors import SafetensorError, safe_open

        # A fresh (private, copy-on-write) mapping per call: tensors from one shared
        # handle alias the same pages, so an in-place edit of one returned tensor
        # would show up in the next read of that name. Opening costs ~60 µs.
        try:
            with safe_open(self.path, framework="pt", device="cpu") as handle:
                if rows is None:
                    return handle.get_tensor(name)
                return handle.get_slice(name)[rows[0] : rows[1]]
        except FileNotFoundError:
            raise CheckpointNotFoundError("file disappeared while reading", self.path, name) from None
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise CorruptCheckpointError(f"cannot read tensor ({exc})", self.path, name) from None
