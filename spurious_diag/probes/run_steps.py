"""The checkpoints of a run, loaded one after another into one working model.

A step's checkpoint is a path (opened lazily with :func:`~spurious_diag.io.load_checkpoint`, read
one tensor at a time), a state dict, a :class:`~spurious_diag.io.Checkpoint` or a model. The maps
of :mod:`.forgetting_map` and the curve of :mod:`.recovery_curve` walk a run this way, so a run of
any length costs one model's memory (plus what each analysis keeps beside it).
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..errors import UsageError
from .grafting import SourceArg, splice_tensors

__all__ = ["StepSource", "open_step", "load_step", "each_step"]

StepSource = Union[str, "os.PathLike[str]", SourceArg]


def open_step(source: StepSource) -> SourceArg:
    """A path opened lazily as a Checkpoint mapping; anything else as given."""
    if isinstance(source, (str, os.PathLike)):
        from ..io.loader import load_checkpoint

        return load_checkpoint(os.fspath(source))
    return source


def load_step(model: torch.nn.Module, source: StepSource) -> list[str]:
    """Put every tensor of ``source`` into ``model``, in place, one tensor at a time; returns the names copied.

    Raises:
        MismatchError: a tensor missing from ``source`` or of another shape.
    """
    names, _ = splice_tensors(model, open_step(source), lambda info: True)
    return names


def each_step(model: torch.nn.Module, steps: Sequence[tuple[int, StepSource]], *, desc: str = "checkpoints",
              progress: bool = True) -> Iterator[tuple[int, SourceArg]]:
    """Load each checkpoint into ``model`` in step order; yields ``(step, its weights as a mapping)``.

    Raises:
        UsageError: no steps.
    """
    ordered = sorted(((int(step), source) for step, source in steps), key=lambda item: item[0])
    if not ordered:
        raise UsageError("no checkpoints to walk")
    for step, source in tqdm(ordered, desc=desc, unit="ckpt", disable=not progress):
        current = open_step(source)
        load_step(model, current)
        yield step, current
