"""Chains of checkpoints: HF Trainer ``checkpoint-N`` folders, ordered by step."""

from __future__ import annotations

import os
import re

from ..errors import CheckpointNotFoundError
from .checkpoint import Checkpoint
from .loader import load_checkpoint

__all__ = ["list_chain", "load_chain", "is_chain_dir"]

_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")


def list_chain(directory: str) -> list[tuple[int, str]]:
    """``(step, path)`` of the ``checkpoint-N`` folders of ``directory``, by numeric step.

    ``checkpoint-10`` comes after ``checkpoint-9``. Other entries are ignored.

    Raises:
        CheckpointNotFoundError: ``directory`` does not exist or holds no ``checkpoint-N`` folder.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise CheckpointNotFoundError("no such directory", directory)
    steps = []
    for entry in os.listdir(directory):
        match = _STEP_DIR.match(entry)
        if match and os.path.isdir(os.path.join(directory, entry)):
            steps.append((int(match.group(1)), os.path.join(directory, entry)))
    if not steps:
        raise CheckpointNotFoundError("holds no checkpoint-N folders", directory)
    return sorted(steps)


def is_chain_dir(directory: str) -> bool:
    """True when ``directory`` holds ``checkpoint-N`` folders (and no weights of its own)."""
    if not os.path.isdir(directory):
        return False
    entries = os.listdir(directory)
    has_steps = any(_STEP_DIR.match(e) and os.path.isdir(os.path.join(directory, e)) for e in entries)
    has_weights = any(e.endswith((".safetensors", ".bin", ".gguf")) for e in entries)
    return has_steps and not has_weights


def load_chain(directory: str) -> list[Checkpoint]:
    """Open every ``checkpoint-N`` folder of ``directory`` lazily, in step order."""
    return [load_checkpoint(path) for _, path in list_chain(directory)]
