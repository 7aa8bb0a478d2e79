"""Readers over tensors already in memory: an ``nn.Module`` or a state dict.

For notebooks: ``load_checkpoint(model)`` gives the same mapping as a file on
disk. Each access returns a detached *copy*, so the mapping stays a snapshot
of nothing in particular: reading it twice while the model trains gives the
weights of each moment, and the caller can never modify the model through it.
"""

from __future__ import annotations

from typing import Mapping

import torch

from .checkpoint import TensorInfo

__all__ = ["StateDictReader"]


class StateDictReader:
    """A :class:`~spurious_diag.io.checkpoint.TensorReader` over a name → tensor mapping.

    Tensors that share storage (tied weights) are listed once, under the first
    name; later names become aliases in ``self.aliases``.
    """

    def __init__(self, state: Mapping[str, torch.Tensor], path: str = "<in-memory>"):
        self.path = path
        self._state: dict[str, torch.Tensor] = {}
        self.aliases: dict[str, list[str]] = {}
        seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
        for name, tensor in state.items():
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"{path}: value of {name!r} is a {type(tensor).__name__}, not a tensor")
            if _is_sharded(tensor):  # FSDP2: a tied weight is one DTensor object under two names
                key = (id(tensor), 0, (), ())
                if key in seen:
                    self.aliases.setdefault(seen[key], []).append(name)
                    continue
                seen[key] = name
            elif tensor.numel() > 0 and tensor.device.type != "meta":
                key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
                if key in seen:
                    self.aliases.setdefault(seen[key], []).append(name)
                    continue
                seen[key] = name
            self._state[name] = tensor

    @classmethod
    def from_module(cls, module: torch.nn.Module) -> "StateDictReader":
        """All parameters and persistent buffers of ``module`` (its ``state_dict``)."""
        return cls(module.state_dict(keep_vars=True), path=f"<in-memory {type(module).__name__}>")

    def infos(self) -> dict[str, TensorInfo]:
        return {n: TensorInfo(n, tuple(t.shape), t.dtype, self.path) for n, t in self._state.items()}

    def load(self, name: str) -> torch.Tensor:
        """A detached CPU copy of ``name``. A sharded tensor (FSDP2's ``DTensor``) is gathered whole
        first: a collective, so every rank must read the same names in the same order."""
        tensor = self._state[name]
        if _is_sharded(tensor):
            tensor = tensor.full_tensor()
        return tensor.detach().to("cpu", copy=True)


def _is_sharded(tensor: torch.Tensor) -> bool:
    """A ``torch.distributed`` DTensor (FSDP2 parameters): its ``shape`` is global, its data a shard."""
    return hasattr(tensor, "full_tensor") and hasattr(tensor, "placements")
