"""Prove that frozen tensors are bit-identical after training, streaming one tensor at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch

from ..errors import FrozenWeightsChangedError, MismatchError
from ..io.loader import CheckpointSource, load_checkpoint

__all__ = ["FrozenCheck", "verify_frozen", "assert_frozen"]


@dataclass
class FrozenCheck:
    """Outcome of :func:`verify_frozen`.

    Attributes:
        identical: frozen names whose bytes are unchanged.
        changed: frozen names whose bytes differ (should be empty).
        trainable_changed / trainable_unchanged: the other tensors, for context (a run where
            nothing trainable changed did not train).
    """

    identical: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    trainable_changed: list[str] = field(default_factory=list)
    trainable_unchanged: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.changed

    def summary(self) -> str:
        state = "bit-identical" if self.ok else f"CHANGED: {', '.join(self.changed[:5])}"
        text = f"{len(self.identical) + len(self.changed)} frozen tensors {state}"
        checked = len(self.trainable_changed) + len(self.trainable_unchanged)
        if checked:  # trainable tensors are only compared when the "before" side holds them
            text += f"; {len(self.trainable_changed)} of {checked} trainable tensors changed"
        return text


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device != b.device:  # a model trained on a GPU against its checkpoint on disk
        b = b.to(a.device)
    # byte view: NaN == NaN and -0.0 != +0.0, as "bit-identical" means
    return torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def verify_frozen(before: CheckpointSource, after: CheckpointSource, frozen: Iterable[str],
                  *, check_trainable: bool = True) -> FrozenCheck:
    """Compare ``before`` and ``after`` (checkpoints, modules or state dicts) tensor by tensor.

    Args:
        frozen: names that must be bit-identical (e.g. ``FreezeReport.frozen``).
        check_trainable: also record which other tensors changed.

    Raises:
        MismatchError: a frozen name is missing from either side.
    """
    a, b = load_checkpoint(before), load_checkpoint(after)
    frozen = list(frozen)
    result = FrozenCheck()
    for name in frozen:
        for side in (a, b):
            if name not in side:
                raise MismatchError("frozen tensor not found", side.path, name)
        (result.identical if _same_bits(a[name], b[name]) else result.changed).append(name)
    if check_trainable:
        frozen_set = set(frozen)
        for name in a:
            if name in frozen_set or name not in b:
                continue
            (result.trainable_unchanged if _same_bits(a[name], b[name]) else result.trainable_changed).append(name)
    return result


def assert_frozen(before: CheckpointSource, after: CheckpointSource, frozen: Iterable[str],
                  path: Optional[str] = None) -> FrozenCheck:
    """:func:`verify_frozen`, raising :class:`FrozenWeightsChangedError` if any frozen tensor moved."""
    check = verify_frozen(before, after, frozen)
    if not check.ok:
        raise FrozenWeightsChangedError(f"{len(check.changed)} frozen tensors changed during training", path,
                                        check.changed[0])
    return check
