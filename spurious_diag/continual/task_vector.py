"""Task Vector (task-arithmetic negation, DESIGN.md §2c): undo part of a new task's update.

    θ = θ_k − α · (θ_end − θ_start)

for every parameter: θ_start the model before the new task (the Task 0 model), θ_end the new
task's SEQ model at some point e, θ_k its checkpoint at point k. α = 0 gives θ_k back, bit for
bit; :func:`task_vector_sweep` scores every (k ≤ e, α) on every task's evaluation sets.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Mapping, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..errors import MismatchError, UsageError
from .evaluation import SequenceEvaluator

__all__ = ["negate_task_vector", "task_vector_sweep"]

logger = logging.getLogger(__name__)


def negate_task_vector(theta_k: Mapping[str, torch.Tensor], theta_start: Mapping[str, torch.Tensor],
                       theta_end: Mapping[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """θ_k − α·(θ_end − θ_start), tensor by tensor, in each tensor's dtype (computed in float64 at
    least, rounded once). Non-float tensors (buffers of ids) are copied from θ_k.

    Args:
        theta_k, theta_start, theta_end: state dicts with the same names and shapes.
        alpha: the scale of the negated task vector (finite; 0 returns copies of θ_k).

    Returns:
        A new state dict (θ_k's names, shapes, dtypes and devices).

    Raises:
        MismatchError: a name missing from θ_start or θ_end, or a shape that differs (named).
        UsageError: a non-finite α.

    >>> k, s, e = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([0.5, 1.0])}
    >>> negate_task_vector(k, s, e, 0.5)["w"]
    tensor([0.7500, 1.5000])
    """
    if not math.isfinite(alpha):
        raise UsageError(f"alpha must be finite, got {alpha}")
    out = {}
    for name, current in theta_k.items():
        start, end = theta_start.get(name), theta_end.get(name)
        for label, other in (("theta_start", start), ("theta_end", end)):
            if other is None:
                raise MismatchError(f"missing from {label}", tensor=name)
            if other.shape != current.shape:
                raise MismatchError(f"shape {tuple(other.shape)} in {label}, {tuple(current.shape)} in theta_k",
                                    tensor=name)
        if alpha == 0 or not current.is_floating_point():
            out[name] = current.detach().clone()
            continue
        work = torch.promote_types(current.dtype, torch.float64)
        vector = end.detach().to(current.device, work) - start.detach().to(current.device, work)
        out[name] = (current.detach().to(work) - float(alpha) * vector).to(current.dtype)
    return out


def task_vector_sweep(model: PreTrainedModel, evaluator: SequenceEvaluator, start: Mapping[str, torch.Tensor],
                      checkpoints: Mapping[int, Mapping[str, torch.Tensor]], alphas: Sequence[float], *,
                      ends: Optional[Sequence[int]] = None, ks: Optional[Sequence[int]] = None,
                      progress: bool = True) -> pd.DataFrame:
    """Score θ_k − α·(θ_e − θ_start) for every checkpoint step k ≤ e, every e of ``ends`` (default: the
    last checkpoint) and every α, on every set of ``evaluator``'s tasks.

    Args:
        model: loaded with each candidate in turn (its own weights are put back afterwards).
        evaluator: the sequence's evaluator (:class:`~.evaluation.SequenceEvaluator`).
        start: θ_start, the state dict before the new task.
        checkpoints: step → state dict of the new task's SEQ run.
        alphas: the scales to try.
        ends: the steps e to take θ_end from.
        ks: the steps k to take θ_k from (default: every checkpoint; only those ≤ e are used).

    Returns:
        One row per (k, e, α): ``k``, ``e``, ``alpha`` and ``exact_match`` per set, in columns
        ``<task>/<set>``.
    """
    steps = sorted(checkpoints)
    if not steps:
        raise UsageError("no checkpoints to sweep")
    ends = list(ends) if ends is not None else [steps[-1]]
    missing = [e for e in ends if e not in checkpoints]
    if missing:
        raise UsageError(f"no checkpoint at steps {missing}; have {steps}")
    own = copy.deepcopy(model.state_dict())
    ks = steps if ks is None else sorted(set(ks))
    missing = [k for k in ks if k not in checkpoints]
    if missing:
        raise UsageError(f"no checkpoint at steps {missing}; have {steps}")
    candidates = [(k, e, float(a)) for e in ends for k in ks if k <= e for a in alphas]
    rows = []
    try:
        for k, e, alpha in tqdm(candidates, desc="task vector", unit="model", disable=not progress):
            model.load_state_dict(negate_task_vector(checkpoints[k], start, checkpoints[e], alpha))
            scores, _ = evaluator.full(model)
            rows.append({"k": k, "e": e, "alpha": alpha,
                         **{f"{r['eval_task']}/{r['eval_set']}": r["exact_match"] for r in scores}})
    finally:
        model.load_state_dict(own)
    logger.info("task vector: %d candidates scored", len(rows))
    return pd.DataFrame(rows)
