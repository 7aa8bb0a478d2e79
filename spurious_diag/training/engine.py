"""The training engine: train one task with the bottom layers frozen, and prove they did not move.

:func:`train_task` is the one place where the package freezes, snapshots, trains and verifies:

1. **freeze** the embeddings and blocks 0..k−1 (:func:`~spurious_diag.freeze.freeze_bottom_layers`),
   which leaves them out of the optimizer that ``Trainer`` builds;
2. **snapshot** the frozen tensors (a copy, taken before a resume loads a checkpoint, so the
   check is against the true start);
3. **train** (:func:`~.trainer.train_model`);
4. **verify** every frozen tensor bit-identical to its snapshot, raising
   :class:`~spurious_diag.errors.FrozenWeightsChangedError` otherwise.

``spurious-diag train`` (:func:`~.finetune.finetune`) and the continual runner both call it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import FrozenWeightsChangedError
from ..freeze import FreezeReport, FrozenCheck, freeze_bottom_layers, verify_frozen
from .records import EncodedExample, Record
from .settings import TrainSettings
from .trainer import TrainingResult, train_model

__all__ = ["TaskRun", "snapshot_frozen", "check_snapshot", "train_task"]

logger = logging.getLogger(__name__)


@dataclass
class TaskRun:
    """What :func:`train_task` did.

    Attributes:
        training: the :class:`~.trainer.TrainingResult` (steps, losses, timing).
        freeze: what was frozen (None when nothing was).
        frozen_check: the bit-identity check of the frozen tensors after training (None when
            nothing was frozen).
    """

    training: TrainingResult
    freeze: Optional[FreezeReport]
    frozen_check: Optional[FrozenCheck]


def snapshot_frozen(model: torch.nn.Module, report: Optional[FreezeReport]) -> dict[str, torch.Tensor]:
    """Copies of the tensors ``report`` froze (empty when ``report`` is None)."""
    if report is None:
        return {}
    params = dict(model.named_parameters())
    return {name: params[name].detach().clone() for name in report.frozen}


def check_snapshot(snapshot: dict[str, torch.Tensor], model: torch.nn.Module, *, during: str = "training",
                   path: Optional[str] = None) -> FrozenCheck:
    """Verify that ``model``'s tensors named in ``snapshot`` still have the snapshot's exact bytes.

    Raises:
        FrozenWeightsChangedError: a frozen tensor moved (the message names it, and ``path``).
    """
    check = verify_frozen(snapshot, model, list(snapshot))
    if not check.ok:
        raise FrozenWeightsChangedError(f"{len(check.changed)} frozen tensors changed during {during}", path,
                                        check.changed[0])
    return check


def train_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Union[Record, EncodedExample]],
    settings: TrainSettings,
    *,
    seed: int,
    freeze_layers: Optional[int] = None,
    freeze_embeddings: bool = True,
    label: str = "training",
    **train_options: Any,
) -> TaskRun:
    """Freeze (when ``freeze_layers`` is given), snapshot, train and verify one task, in place.

    Args:
        model, tokenizer, records, settings, seed: what and how to train
            (:func:`~.trainer.train_model`).
        freeze_layers: Freeze(k): the embeddings (if ``freeze_embeddings``) and blocks 0..k−1;
            None trains every tensor (SEQ).
        label: what the task is called in logs and errors (e.g. ``task1``).
        train_options: the rest of :func:`~.trainer.train_model`'s keywords (``callbacks``,
            ``checkpoints``, ``resume_from``, ``device``, ``progress``, ``extra_loss``).

    Returns:
        :class:`TaskRun`.

    Raises:
        FrozenWeightsChangedError: a frozen tensor changed during training.
        UsageError: a freeze depth beyond the model.
    """
    report = freeze_bottom_layers(model, freeze_layers, freeze_embeddings) if freeze_layers is not None else None
    snapshot = snapshot_frozen(model, report)
    training = train_model(model, tokenizer, records, settings, seed=seed, **train_options)
    check = None
    if report is not None:
        check = check_snapshot(snapshot, model, during=label)
        logger.info("rank %s: %s after %d steps of %s", os.environ.get("RANK", "0"), check.summary(), training.steps,
                    label)
    return TaskRun(training, report, check)
