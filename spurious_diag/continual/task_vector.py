"""Task Vector (task-arithmetic negation, DESIGN.md §2c): undo part of a new task's update.

    θ = θ_k − α · (θ_end − θ_start)

for every parameter: θ_start the model before the new task (the Task 0 model), θ_end the new
task's SEQ model at some point e, θ_k its checkpoint at point k. α = 0 gives θ_k back, bit for
bit; the runner sweeps (k, e, α) and scores each on the old and the new task.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..errors import MismatchError, UsageError

__all__ = ["negate_task_vector"]


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
    if not torch.isfinite(torch.tensor(float(alpha))):
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
