"""Gradient projection (DESIGN.md §2c): train a new task with the component of every gradient along D removed.

D is the direction the weights move in during the early steps of the new task, where spurious
forgetting happens: before the task, short preliminary runs from the current model give
D = θ_late − θ_early (the paper: steps 150 and 100; averaged over runs, model and optimizer reset
afterwards; :func:`weight_direction`, :func:`mean_direction`). Then, after each backward:

- a 2-D weight, row by row: ``g_r ← g_r − D_r · (g_r · D_r) / ‖D_r‖²`` (rows of D that are zero
  leave the row alone), so each row of the result is orthogonal to D's row;
- any other tensor, as one vector: ``g ← g − D · (g · D) / ‖D‖²``.

``rule="official"`` instead subtracts ``D_r · cos(g_r, D_r)``, as the paper's code writes it
(DESIGN.md §2c: "not an exact projection"); it leaves a component along D_r unless ‖D_r‖ = ‖g_r‖.

In training the projection runs after gradient clipping, just before the optimizer step
(:class:`ProjectionCallback`); with D = 0 it changes nothing, bit for bit.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import torch
from transformers import TrainerCallback

from ..errors import MismatchError, UsageError

__all__ = ["PROJECTION_RULES", "project_out", "weight_direction", "mean_direction", "GradientProjector",
           "ProjectionCallback"]

logger = logging.getLogger(__name__)

PROJECTION_RULES = ("exact", "official")


def project_out(grad: torch.Tensor, direction: torch.Tensor, *, rule: str = "exact") -> torch.Tensor:
    """``grad`` without its component along ``direction`` (row by row for 2-D tensors).

    Args:
        grad: a gradient, any shape.
        direction: D, the same shape.
        rule: ``"exact"`` (orthogonal projection) or ``"official"`` (subtract D · cos).

    Returns:
        A new tensor of ``grad``'s shape and dtype; rows (or tensors) where D is zero are unchanged.
        The arithmetic is done in float32 at least.

    >>> g = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    >>> project_out(g, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    tensor([[0., 1.],
            [2., 0.]])
    """
    if rule not in PROJECTION_RULES:
        raise UsageError(f"projection rule must be one of {PROJECTION_RULES}, got {rule!r}")
    if grad.shape != direction.shape:
        raise MismatchError(f"gradient {tuple(grad.shape)} and direction {tuple(direction.shape)} differ in shape")
    work = torch.promote_types(grad.dtype, torch.float32)
    g, d = grad.to(work), direction.to(device=grad.device, dtype=work)
    if g.ndim != 2:
        g, d = g.reshape(1, -1), d.reshape(1, -1)
    dot = (g * d).sum(dim=1, keepdim=True)
    d_sq = (d * d).sum(dim=1, keepdim=True)
    if rule == "exact":
        coef = torch.where(d_sq > 0, dot / d_sq.clamp_min(torch.finfo(work).tiny), torch.zeros_like(dot))
    else:
        norms = g.norm(dim=1, keepdim=True) * d_sq.sqrt()
        coef = torch.where(norms > 0, dot / norms.clamp_min(torch.finfo(work).tiny), torch.zeros_like(dot))
    return (g - coef * d).reshape(grad.shape).to(grad.dtype)


def weight_direction(early: Mapping[str, torch.Tensor], late: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """D = late − early for every tensor of ``early`` (float32 on the CPU).

    Raises:
        MismatchError: a tensor missing from ``late`` or of another shape.
    """
    out = {}
    for name, before in early.items():
        after = late.get(name)
        if after is None or after.shape != before.shape:
            raise MismatchError("missing or of another shape in the later weights", tensor=name)
        out[name] = after.detach().float().cpu() - before.detach().float().cpu()
    return out


def mean_direction(directions: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of the preliminary runs' directions, tensor by tensor.

    Raises:
        UsageError: no directions, or runs that name different tensors.
    """
    if not directions:
        raise UsageError("no preliminary runs to average")
    names = set(directions[0])
    if any(set(d) != names for d in directions[1:]):
        raise UsageError("preliminary runs cover different tensors")
    return {name: sum(d[name] for d in directions) / len(directions) for name in directions[0]}


class GradientProjector:
    """Removes each trainable parameter's component along its direction from its ``.grad``, in place.

    Args:
        directions: parameter name → D (parameters without an entry are left alone).
        rule: see :func:`project_out`.
    """

    def __init__(self, directions: Mapping[str, torch.Tensor], rule: str = "exact"):
        if rule not in PROJECTION_RULES:
            raise UsageError(f"projection rule must be one of {PROJECTION_RULES}, got {rule!r}")
        self.directions = dict(directions)
        self.rule = rule

    def apply(self, model: torch.nn.Module) -> int:
        """Project the gradients of ``model``'s parameters; returns how many were projected."""
        done = 0
        with torch.no_grad():
            for name, p in model.named_parameters():
                d = self.directions.get(name)
                if d is None or p.grad is None:
                    continue
                p.grad.copy_(project_out(p.grad, d, rule=self.rule))
                done += 1
        return done


class ProjectionCallback(TrainerCallback):
    """Applies a :class:`GradientProjector` after clipping, before every optimizer step."""

    def __init__(self, projector: GradientProjector):
        self.projector = projector

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is None:
            raise UsageError("the Trainer passed no model to the projection callback")
        self.projector.apply(model)
        return control
