"""An HF ``TrainerCallback`` that freezes the bottom layers on a schedule."""

from __future__ import annotations

import logging
from typing import Any, Optional

from transformers import TrainerCallback

from .freezing import FreezeReport, freeze_bottom_layers, remove_frozen_from_optimizer

__all__ = ["FreezeCallback"]

logger = logging.getLogger(__name__)


class FreezeCallback(TrainerCallback):
    """Freeze the embeddings and blocks 0..n−1 at global step ``at_step`` of a ``Trainer`` run.

    ``at_step=0`` freezes before the first step (the optimizer then never sees the frozen
    tensors if the model was frozen before ``train()``; otherwise they are removed from it).
    A later step freezes mid-run, e.g. at a task boundary inside one run of concatenated
    tasks: the frozen tensors are removed from the optimizer's groups and state, so AdamW's
    weight decay cannot move them.

    Attributes:
        report: the :class:`FreezeReport`, once frozen; ``frozen_at``: the step it happened.
    """

    def __init__(self, n: int, *, embeddings: bool = True, at_step: int = 0):
        self.n, self.embeddings, self.at_step = n, embeddings, at_step
        self.report: Optional[FreezeReport] = None
        self.frozen_at: Optional[int] = None

    def _freeze(self, state: Any, model: Any, optimizer: Any) -> None:
        self.report = freeze_bottom_layers(model, self.n, self.embeddings)
        removed = remove_frozen_from_optimizer(optimizer) if optimizer is not None else 0
        self.frozen_at = state.global_step
        logger.info("step %d: %s (%d tensors removed from the optimizer)", state.global_step,
                    self.report.summary(), removed)

    def on_step_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                      **kwargs: Any) -> None:
        if self.report is None and state.global_step >= self.at_step:
            self._freeze(state, model, optimizer)
