"""Reader of PyTorch ``.bin`` state dicts (``pytorch_model.bin`` and its shards).

``torch.load(mmap=True, weights_only=True)`` maps the file instead of reading
it: shapes and dtypes come from the pickled metadata, tensor bytes are paged
in only when a tensor is used. The map is private (copy-on-write), so nothing
the caller does can write back into the file. ``weights_only`` refuses
arbitrary pickled code.
"""

from __future__ import annotations

import pickle
import zipfile
from typing import Optional

import torch

from ..errors import CorruptCheckpointError
from .checkpoint import TensorInfo
from .hf_dir import require_nonempty_file

__all__ = ["TorchBinFile"]


class TorchBinFile:
    """A :class:`~spurious_diag.io.checkpoint.TensorReader` over one ``.bin`` file."""

    def __init__(self, path: str):
        self.path = str(path)
        require_nonempty_file(self.path)
        self._state: Optional[dict[str, torch.Tensor]] = self._open()
        # Tensors sharing storage (tied weights saved twice) are kept once.
        seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
        self.aliases: dict[str, list[str]] = {}
        self._infos: dict[str, TensorInfo] = {}
        for name, t in self._state.items():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
            if key in seen and t.numel() > 0:
                self.aliases.setdefault(seen[key], []).append(name)
                continue
            seen[key] = name
            self._infos[name] = TensorInfo(name, tuple(t.shape), t.dtype, self.path)

    def _open(self) -> dict[str, torch.Tensor]:
        try:
            state = torch.load(self.path, map_location="cpu", mmap=True, weights_only=True)
        except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CorruptCheckpointError(f"not a readable torch zip checkpoint ({msg[:200]})", self.path) from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CorruptCheckpointError("does not hold a flat state dict of tensors", self.path)
        return state

    def infos(self) -> dict[str, TensorInfo]:
        return dict(self._infos)

    def load(self, name: str) -> torch.Tensor:
        if name not in self._infos:
            raise KeyError(name)
        if self._state is None:
            self._state = self._open()
        return self._state[name].clone()

    def load_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of ``name``; only those pages of the map are read."""
        if name not in self._infos:
            raise KeyError(name)
        if self._state is None:
            self._state = self._open()
        return self._state[name][start:stop].clone()

    def close(self) -> None:
        self._state = None
