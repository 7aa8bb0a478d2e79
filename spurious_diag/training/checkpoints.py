"""Full-state ``Trainer`` checkpoints that a killed run resumes from, written atomically.

``Trainer`` writes a ``checkpoint-N`` folder file by file (weights, ``optimizer.pt``,
``scheduler.pt``, ``rng_state.pth``, ``trainer_state.json``), so a kill in the middle of a
save leaves a torn folder that a resume would trust. Here ``Trainer`` saves into a staging
folder (``<dir>/.partial/checkpoint-N``); once it is complete, :class:`StagedCheckpointCallback`
adds the state of the :class:`ResumableCallback` s (``callback_state.json``: e.g. the
evaluation rows recorded so far) and renames the folder to ``<dir>/checkpoint-N`` in one
``os.replace``. A ``checkpoint-N`` folder is therefore complete or absent, and
:func:`last_checkpoint` still checks the files before trusting one.

Resuming (``Trainer.train(resume_from_checkpoint=...)``) restores the weights, the optimizer
and scheduler states, the RNG states and the data position, so that on CPU the resumed run
reaches bit-identical weights to an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..errors import CorruptCheckpointError, UsageError
from ..io.loader import load_checkpoint
from ..outputs import atomic_write_text

__all__ = ["CALLBACK_STATE_NAME", "STAGING_DIR", "CheckpointPlan", "ResumableCallback", "StagedCheckpointCallback",
           "complete_checkpoints", "last_checkpoint", "load_callback_states", "load_weights", "write_state_json"]

logger = logging.getLogger(__name__)

CALLBACK_STATE_NAME = "callback_state.json"
STAGING_DIR = ".partial"
_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")
# Written by Trainer.save_model / _save_checkpoint; callback_state.json is ours and comes last.
_REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt", CALLBACK_STATE_NAME)
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often a run saves full-state checkpoints.

    Attributes:
        directory: the complete ``checkpoint-N`` folders go here (staged in ``directory/.partial``).
        every: save every this many optimizer steps, and at the end.
        keep: keep only the newest this many complete checkpoints (None: all).
    """

    directory: str
    every: int
    keep: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", os.fspath(self.directory))
        if self.every < 1:
            raise UsageError(f"checkpoints every {self.every} steps: must be >= 1")
        if self.keep is not None and self.keep < 1:
            raise UsageError(f"keep must be >= 1 or None, got {self.keep}")


class ResumableCallback(TrainerCallback):
    """A callback whose state is saved with every full-state checkpoint and restored on resume.

    Subclasses return JSON-serializable state from :meth:`state_dict` (floats round-trip
    exactly through JSON) and take it back in :meth:`load_state_dict`. ``resumed`` is True
    after a restore, so a callback can skip what it did at the start of the first run.
    """

    resumed: bool = False

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError


def _builtin(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy / torch scalars
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot save a {type(value).__name__} in a resume state")


def write_state_json(path: PathLike, data: Any) -> None:
    """Write resume state as JSON atomically: numpy/torch scalars as numbers (not strings),
    floats exactly (NaN included), anything else unknown refused."""
    atomic_write_text(os.fspath(path), json.dumps(data, indent=1, default=_builtin) + "\n")


def _state_key(callback: ResumableCallback, index: int) -> str:
    return f"{index}:{type(callback).__name__}"


def _is_main_process(state: TrainerState) -> bool:
    return bool(state.is_world_process_zero)


class StagedCheckpointCallback(TrainerCallback):
    """Moves each checkpoint ``Trainer`` saved in ``staging`` to ``target`` once it is complete.

    Args:
        staging: ``Trainer``'s ``output_dir`` (``target/.partial``).
        target: where the complete ``checkpoint-N`` folders go.
        resumables: callbacks whose :meth:`ResumableCallback.state_dict` goes into each
            checkpoint's ``callback_state.json``.
        keep: keep only the newest ``keep`` complete checkpoints (None: keep all).
    """

    def __init__(self, staging: PathLike, target: PathLike, resumables: Sequence[ResumableCallback] = (),
                 keep: Optional[int] = None):
        if keep is not None and keep < 1:
            raise UsageError(f"keep must be >= 1 or None, got {keep}")
        self.staging = os.fspath(staging)
        self.target = os.fspath(target)
        self.resumables = list(resumables)
        self.keep = keep

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        # Under `accelerate launch` every rank writes its own rng_state_<rank>.pth into the folder:
        # wait for all of them before the main process moves it.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        if not _is_main_process(state):
            return
        name = f"checkpoint-{state.global_step}"
        staged, final = os.path.join(self.staging, name), os.path.join(self.target, name)
        # Trainer resumed from a final checkpoint would take one more step: record that it is final.
        write_state_json(os.path.join(staged, CALLBACK_STATE_NAME), {
            "training_stopped": bool(control.should_training_stop),
            "callbacks": {_state_key(cb, i): cb.state_dict() for i, cb in enumerate(self.resumables)},
        })
        if os.path.exists(final):  # only after an unusual resume; the new one supersedes it
            shutil.rmtree(final)
        os.replace(staged, final)
        logger.debug("checkpoint %s complete", final)
        if self.keep is not None:
            for _, old in complete_checkpoints(self.target)[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)


def _is_complete(path: str) -> bool:
    files = set(os.listdir(path))
    if not all(name in files for name in _REQUIRED) or not any(name in files for name in _WEIGHTS):
        return False
    if not any(name.startswith("rng_state") and name.endswith(".pth") for name in files):
        return False
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
            json.load(f)
        with open(os.path.join(path, CALLBACK_STATE_NAME), encoding="utf-8") as f:
            json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def complete_checkpoints(directory: PathLike) -> list[tuple[int, str]]:
    """``(step, path)`` of the complete full-state ``checkpoint-N`` folders of ``directory``, by step.

    Complete: weights, ``optimizer.pt``, ``scheduler.pt``, an RNG state, a parseable
    ``trainer_state.json`` and ``callback_state.json``. Incomplete ones (e.g. weight-only
    folders, or torn ones written by other tools) are skipped with a warning; a missing
    ``directory`` has none.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    found = []
    for entry in os.listdir(directory):
        match = _STEP_DIR.match(entry)
        path = os.path.join(directory, entry)
        if not match or not os.path.isdir(path):
            continue
        if _is_complete(path):
            found.append((int(match.group(1)), path))
        else:
            logger.warning("%s: not a complete full-state checkpoint; not resuming from it", path)
    return sorted(found)


def last_checkpoint(directory: PathLike) -> Optional[str]:
    """The newest complete checkpoint of ``directory`` (see :func:`complete_checkpoints`), or None."""
    found = complete_checkpoints(directory)
    return found[-1][1] if found else None


def load_callback_states(checkpoint: PathLike, resumables: Sequence[ResumableCallback]) -> bool:
    """Restore ``resumables`` from ``checkpoint``'s ``callback_state.json``.

    Returns:
        True when training had stopped at this checkpoint (its last step, or a callback
        stopped it): there is nothing left to train.

    Raises:
        CorruptCheckpointError: the file lacks the state of one of ``resumables`` (the run was
            saved with other callbacks).
    """
    path = os.path.join(os.fspath(checkpoint), CALLBACK_STATE_NAME)
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    states = saved.get("callbacks", {}) if isinstance(saved, dict) else {}
    for i, callback in enumerate(resumables):
        key = _state_key(callback, i)
        if key not in states:
            raise CorruptCheckpointError(f"no saved state for callback {key} (saved: {sorted(states)})", path)
        callback.load_state_dict(states[key])
        callback.resumed = True
    return bool(saved.get("training_stopped", False))


def load_weights(model: torch.nn.Module, checkpoint: PathLike) -> None:
    """Load the weights of a ``checkpoint-N`` folder into ``model`` in place (any layout
    :func:`spurious_diag.load_checkpoint` reads).

    Tensors stored once under a tied name (e.g. ``lm_head.weight`` tied to the embeddings)
    are accepted as missing when they share storage with a loaded one.

    Raises:
        CorruptCheckpointError: names missing from the checkpoint, or unexpected ones.
    """
    stored_checkpoint = load_checkpoint(os.fspath(checkpoint))
    stored = {name: stored_checkpoint[name] for name in stored_checkpoint.keys()}
    result = model.load_state_dict(stored, strict=False)
    current = model.state_dict()
    loaded = {current[name].data_ptr() for name in stored if name in current}
    missing = [name for name in result.missing_keys if current[name].data_ptr() not in loaded]
    if missing or result.unexpected_keys:
        raise CorruptCheckpointError(f"weights do not match the model: missing {missing[:3]}, "
                                     f"unexpected {list(result.unexpected_keys)[:3]}", checkpoint)
