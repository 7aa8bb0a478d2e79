"""Trainer callbacks that evaluate while a task trains, and stop it at its early-stop point.

Both keep their state across a kill: they are :class:`~.checkpoints.ResumableCallback` s, whose
state travels with every full-state checkpoint, so a resumed run continues their rows.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Optional

import pandas as pd
import torch
from transformers import PreTrainedModel, TrainerControl, TrainerState, TrainingArguments

from ..errors import UsageError
from .checkpoints import ResumableCallback
from .evaluate import eval_mode

__all__ = ["EvaluateEveryCallback", "EarlyStopAtCallback"]

logger = logging.getLogger(__name__)


class EvaluateEveryCallback(ResumableCallback):
    """Calls ``evaluate(model)`` before training (step 0) and every ``every`` optimizer steps.

    ``evaluate`` returns a flat mapping of numbers (e.g. ``{"task0_em": 0.9}``); the model is
    put in eval mode under ``torch.no_grad()`` for the call and restored afterwards. Rows
    ``{"step": ..., **metrics}`` accumulate in ``rows``; :meth:`frame` returns them as a
    DataFrame. The evaluation draws no random numbers, so it does not change the training run.
    The rows travel with each full-state checkpoint; a resumed run continues them.
    """

    def __init__(self, every: int, evaluate: Callable[[PreTrainedModel], Mapping[str, float]], *,
                 at_start: bool = True, max_step: Optional[int] = None):
        if every < 1:
            raise UsageError(f"evaluate every {every} steps: must be >= 1")
        self.every = every
        self.evaluate = evaluate
        self.at_start = at_start
        self.max_step = max_step
        self.rows: list[dict[str, Any]] = []

    def _run(self, model: PreTrainedModel, step: int) -> None:
        with eval_mode(model), torch.no_grad():
            metrics = dict(self.evaluate(model))
        self.rows.append({"step": step, **metrics})
        logger.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rows = [dict(row) for row in state["rows"]]

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Optional[PreTrainedModel] = None, **kwargs: Any) -> None:
        if self.at_start and model is not None and not self.resumed:
            self._run(model, state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    model: Optional[PreTrainedModel] = None, **kwargs: Any) -> None:
        step = state.global_step
        if model is not None and step % self.every == 0 and (self.max_step is None or step <= self.max_step):
            self._run(model, step)

    def frame(self) -> pd.DataFrame:
        """One row per evaluation: ``step`` then the metric columns."""
        return pd.DataFrame(self.rows)


class EarlyStopAtCallback(ResumableCallback):
    """Marks the first evaluation of ``evaluator`` whose ``key`` reaches ``threshold`` as the
    early-stop point, and stops training there when ``stop_training``.

    Must come after ``evaluator`` (an :class:`EvaluateEveryCallback`) in the callback list.

    Attributes:
        stopped_at: the step of the early-stop point, once reached (None before).
    """

    def __init__(self, evaluator: EvaluateEveryCallback, threshold: float, key: str = "exact_match", *,
                 stop_training: bool = True):
        self.evaluator, self.threshold, self.key, self.stop_training = evaluator, threshold, key, stop_training
        self.stopped_at: Optional[int] = None

    def state_dict(self) -> dict[str, Any]:
        return {"stopped_at": self.stopped_at}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stopped_at = state["stopped_at"]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        rows = self.evaluator.rows
        if (self.stopped_at is None and rows and rows[-1]["step"] == state.global_step
                and rows[-1].get(self.key, 0.0) >= self.threshold):
            self.stopped_at = state.global_step
            if self.stop_training:
                control.should_training_stop = True
