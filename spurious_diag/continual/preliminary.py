"""The short preliminary runs of gradient projection: where does the new task first move the weights?

Before a new task, copies of the current model train on it for ``late`` steps; each copy's
weights at steps ``early`` and ``late`` give D_run = θ_late − θ_early, and D is their mean
(DESIGN.md §2c: the paper's steps 100 and 150, the window where spurious forgetting happens).
The model itself is not touched, and each copy has its own optimizer, so nothing needs
resetting afterwards. :mod:`.projection` then removes the component of every gradient along D.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from ..errors import UsageError
from ..training.settings import TrainSettings
from ..training.trainer import train_model
from .projection import PROJECTION_RULES, mean_direction, weight_direction

__all__ = ["PreliminaryRuns", "preliminary_direction"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreliminaryRuns:
    """The window of the preliminary runs, how many to average, and the projection rule they feed.

    Attributes:
        early, late: the steps whose weights are subtracted (0 ≤ early ≤ late, late ≥ 1).
        runs: preliminary runs; run r uses the data seed ``seed + r``.
        rule: how gradients lose their component along D (:func:`~.projection.project_out`):
            ``exact`` (orthogonal projection) or ``official`` (the paper code's g − D·cos).
    """

    early: int = 100
    late: int = 150
    runs: int = 1
    rule: str = "exact"

    def __post_init__(self) -> None:
        if not 0 <= self.early <= self.late or self.late < 1:
            raise UsageError(f"preliminary window needs 0 <= early <= late and late >= 1, got {self.early}..{self.late}")
        if self.runs < 1:
            raise UsageError(f"preliminary runs must be >= 1, got {self.runs}")
        if self.rule not in PROJECTION_RULES:
            raise UsageError(f"projection rule must be one of {PROJECTION_RULES}, got {self.rule!r}")


class _Snapshot(TrainerCallback):
    """Copies the trainable weights when the run reaches ``step`` (step 0: before training)."""

    def __init__(self, step: int):
        self.step = step
        self.weights: dict[str, torch.Tensor] = {}

    def _take(self, model: torch.nn.Module) -> None:
        self.weights = {n: p.detach().float().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.step == 0:
            self._take(model)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            self._take(model)
        return control


def preliminary_direction(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[Any],
                          settings: TrainSettings, plan: PreliminaryRuns, *, seed: int) -> dict[str, torch.Tensor]:
    """D = mean over ``plan.runs`` copies of ``model`` of θ_late − θ_early, for its trainable tensors.

    Each copy trains on ``records`` with ``settings`` (stopped at ``plan.late``, no early stop),
    seed ``seed + r``. ``model`` is left as it was.

    Returns:
        parameter name → D (float32, CPU).
    """
    run_settings = dataclasses.replace(settings, steps=plan.late, early_stop_at=None)
    directions = []
    for run in range(plan.runs):
        trial = copy.deepcopy(model)
        snapshot = _Snapshot(plan.early)
        train_model(trial, tokenizer, records, run_settings, seed=seed + run, callbacks=[snapshot])
        late = {n: p for n, p in trial.named_parameters() if p.requires_grad}
        directions.append(weight_direction(snapshot.weights, late))
        del trial
    direction = mean_direction(directions)
    norm = sum(float(d.double().norm() ** 2) for d in direction.values()) ** 0.5
    logger.info("gradient projection: D over steps %d..%d of %d preliminary runs, norm %.4g", plan.early, plan.late,
                plan.runs, norm)
    return direction
