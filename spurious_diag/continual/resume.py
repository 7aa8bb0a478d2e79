"""What a killed sequential run needs to continue where it stopped.

:func:`~.runner.run_sequence` with a ``state_dir`` keeps there:

    run.json                  the run's identity (method, seed, tasks, settings, schedule), checked on resume
                              (:mod:`spurious_diag.training.resume`)
    task-<i>/                 a finished task, written as one staged folder (complete or absent):
        weights.safetensors   the model at the end of the task
        result.json           its curve, per-attribute, point and loss rows, frozen check, steps, runtime
        fisher.safetensors    EWC's running Fisher after it, when a later task needs it
    train-<i>/checkpoint-N/   the newest full-state Trainer checkpoint of task i while it trains, with
                              the evaluation rows so far (:mod:`spurious_diag.training.checkpoints`);
                              removed once the task is finished

A resumed run skips the finished tasks (their rows and weights come from ``task-<i>/``) and
continues the task in progress from its checkpoint, so it ends with the weights and rows of a
run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from safetensors.torch import load_model, save_model

from ..errors import OutputDirError
from ..freeze import FrozenCheck
from ..outputs import staged_dir
from ..training.checkpoints import last_checkpoint, write_state_json
from ..training.resume import check_identity, read_identity, write_identity
from .ewc import FisherDiagonal, load_fisher, save_fisher

__all__ = ["FinishedTask", "RunState"]

logger = logging.getLogger(__name__)


@dataclass
class FinishedTask:
    """One finished task of a run: its result rows (lists of dicts, as the runner collects them).

    Attributes:
        steps: optimizer steps taken.
        curve / attributes / points / losses: rows for :class:`~.runner.SequenceResult`.
        frozen_check: Freeze(k)'s bit-identity check after the task (None for other methods).
        runtime_s: seconds the task took when it ran.
        fisher: EWC's running Fisher after it (its own folded in), if any.
    """

    steps: int
    curve: list[dict[str, Any]] = field(repr=False)
    attributes: list[dict[str, Any]] = field(repr=False)
    points: list[dict[str, Any]] = field(repr=False)
    losses: list[dict[str, Any]] = field(repr=False)
    frozen_check: Optional[FrozenCheck] = None
    runtime_s: float = 0.0
    fisher: Optional[FisherDiagonal] = field(default=None, repr=False)


class RunState:
    """The ``state_dir`` of one run: its identity, finished tasks and the running task's checkpoints.

    Args:
        directory: the state folder (created if missing).
        identity: what makes the run this run (JSON-serializable); written to ``run.json`` on a
            fresh start, compared with it on resume.
        resume: continue the run in ``directory``; False starts a new one there.

    Raises:
        OutputDirError: ``directory`` is not empty and ``resume`` is False.
        CheckpointNotFoundError: ``resume`` and ``directory`` holds no run (no ``run.json``).
        UsageError: ``resume`` with another identity than the run in ``directory``.
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], identity: Mapping[str, Any], *, resume: bool):
        self.directory = Path(directory)
        if resume:
            check_identity(read_identity(self.directory, "a sequential run"), identity, self.directory)
            logger.info("resuming the run in %s", self.directory)
            return
        if self.directory.exists() and any(self.directory.iterdir()):
            raise OutputDirError("state directory is not empty: pass resume=True to continue the run in it, "
                                 "or choose another one", self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        write_identity(self.directory, identity)

    def train_dir(self, index: int) -> Path:
        """Where task ``index`` keeps its full-state checkpoints while it trains."""
        return self.directory / f"train-{index}"

    def checkpoint(self, index: int) -> Optional[str]:
        """The newest complete checkpoint of task ``index`` in progress, or None."""
        return last_checkpoint(self.train_dir(index))

    def finished(self, index: int) -> Optional[FinishedTask]:
        """Task ``index``'s saved results, if it finished; None otherwise."""
        folder = self.directory / f"task-{index}"
        if not (folder / "result.json").is_file():
            return None
        saved = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        check = saved.pop("frozen_check")
        fisher = load_fisher(folder / "fisher.safetensors") if (folder / "fisher.safetensors").is_file() else None
        return FinishedTask(**saved, frozen_check=FrozenCheck(**check) if check is not None else None, fisher=fisher)

    def load_weights(self, index: int, model: torch.nn.Module) -> None:
        """Put the weights at the end of finished task ``index`` into ``model`` (in place)."""
        load_model(model, str(self.directory / f"task-{index}" / "weights.safetensors"), strict=True)

    def save_finished(self, index: int, model: torch.nn.Module, task: FinishedTask) -> None:
        """Record task ``index`` as finished (atomically) and drop its training checkpoints."""
        fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task) if f.name != "fisher"}
        fields["frozen_check"] = dataclasses.asdict(task.frozen_check) if task.frozen_check is not None else None
        with staged_dir(str(self.directory / f"task-{index}"), overwrite=True) as staging:
            save_model(model, os.path.join(staging, "weights.safetensors"))
            if task.fisher is not None:
                save_fisher(task.fisher, Path(staging) / "fisher.safetensors")
            write_state_json(os.path.join(staging, "result.json"), fields)
        shutil.rmtree(self.train_dir(index), ignore_errors=True)
