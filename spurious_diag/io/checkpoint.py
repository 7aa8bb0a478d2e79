"""The read-only, lazy checkpoint mapping that every loader returns.

A :class:`Checkpoint` knows the names, shapes and dtypes of its tensors from
file headers alone; ``ckpt[name]`` reads that one tensor. Formats plug in as
*readers* (one per weight file): small objects with ``infos()`` and
``load(name)``. This mirrors mergekit's lazy tensor loader: the mapping never
holds more than the tensor being returned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, Optional, Protocol

import torch

from ..errors import CorruptCheckpointError
from .layer_map import ParamInfo, num_layers_of, parse_param_name

__all__ = ["TensorInfo", "TensorReader", "Checkpoint"]


@dataclass(frozen=True)
class TensorInfo:
    """Header facts of one stored tensor: its name, shape, dtype and the file holding it."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: str

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """Bytes as stored (dequantized for GGUF): ``numel`` × the dtype's element size."""
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


class TensorReader(Protocol):
    """One weight file (or in-memory source) that can list and load its tensors."""

    path: str

    def infos(self) -> dict[str, TensorInfo]:
        """Name → header facts, without reading tensor data."""

    def load(self, name: str) -> torch.Tensor:
        """Read one tensor (a fresh CPU tensor the caller may modify)."""


class Checkpoint(Mapping):
    """A read-only ``Mapping[str, torch.Tensor]`` over one checkpoint.

    ``keys()`` are the names stored in the file(s); ``ckpt[name]`` loads that
    tensor alone. Tied weights appear once, under their stored name;
    ``ckpt.tied`` maps each stored name to the aliases that share it
    (e.g. ``{"model.embed_tokens.weight": ("lm_head.weight",)}``).

    Attributes:
        path: the source given by the user (file, directory or ``"<in-memory>"``).
        format: ``safetensors``, ``bin``, ``gguf``, ``module`` or ``state_dict``.
        config: the model config as a dict, when one was found (``config.json``
            or the GGUF metadata), else ``None``.
    """

    def __init__(
        self,
        path: str,
        fmt: str,
        readers: list[TensorReader],
        *,
        config: Optional[dict[str, Any]] = None,
        tied: Optional[Mapping[str, tuple[str, ...]]] = None,
    ):
        self.path = path
        self.format = fmt
        self.config = config
        self._readers = readers
        index: dict[str, tuple[TensorInfo, TensorReader]] = {}
        for reader in readers:
            for name, info in reader.infos().items():
                if name in index:
                    raise CorruptCheckpointError(
                        f"shards disagree: tensor stored twice, in {index[name][0].file} and {info.file}", path, name
                    )
                index[name] = (info, reader)
        self._index = index
        self.tied: Mapping[str, tuple[str, ...]] = dict(tied or {})

    # Mapping protocol -------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            info, reader = self._index[name]
        except KeyError:
            for stored, aliases in self.tied.items():
                if name in aliases:
                    raise KeyError(f"{name!r} is tied to {stored!r}: ask for the stored name") from None
            raise KeyError(f"{name!r} is not a tensor of {self.path}") from None
        return reader.load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __repr__(self) -> str:
        return f"Checkpoint({self.path!r}, format={self.format!r}, tensors={len(self)})"

    def load_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` (first axis) of ``name``.

        Formats that can read a slice alone (safetensors, ``.bin``) do; others load
        the tensor and slice it, so callers should check :meth:`reads_rows_lazily`
        and size their chunks accordingly.
        """
        info, reader = self._index[name]
        load_rows = getattr(reader, "load_rows", None)
        if load_rows is not None:
            return load_rows(name, start, stop)
        return reader.load(name)[start:stop].clone()

    def reads_rows_lazily(self, name: str) -> bool:
        """True when :meth:`load_rows` reads only the rows asked for."""
        return hasattr(self._index[name][1], "load_rows")

    # Header facts ------------------------------------------------------
    def info(self, name: str) -> TensorInfo:
        """Shape, dtype and file of ``name``, from the header alone."""
        return self._index[name][0]

    def infos(self) -> dict[str, TensorInfo]:
        """All header facts, name → :class:`TensorInfo`, in stored order."""
        return {name: entry[0] for name, entry in self._index.items()}

    @property
    def files(self) -> list[str]:
        """The weight files behind this checkpoint, in reading order."""
        return [reader.path for reader in self._readers]

    @cached_property
    def num_layers(self) -> Optional[int]:
        """Number of transformer blocks: from the config, else inferred from the names (read once:
        :meth:`param_info` asks for it per tensor, and inferring it parses every name)."""
        return num_layers_of(self.config, self._index)

    def param_info(self, name: str) -> ParamInfo:
        """The layer map's reading of ``name`` (block index, normalized module)."""
        return parse_param_name(name, self.num_layers)

    def header_hash(self) -> str:
        """SHA-256 over the sorted (name, shape, dtype) triples: identifies the layout, not the values."""
        items = [(n, list(i.shape), str(i.dtype).replace("torch.", "")) for n, i in sorted(self.infos().items())]
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()

    def nbytes(self) -> int:
        """Total bytes of all tensors as stored (dequantized size for GGUF)."""
        return sum(i.nbytes for i in self.infos().values())

    def close(self) -> None:
        """Release file handles and memory maps held by the readers."""
        for reader in self._readers:
            close = getattr(reader, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
