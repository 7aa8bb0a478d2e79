"""Loss landscape: the old and new task's loss on the plane through three checkpoints (the paper's §3.3).

The plane (:mod:`spurious_diag.geometry.plane`) passes through θ_a (the paper: Task 1 step 100)
and is spanned by d1 = θ_b − θ_a (step 150) and d2 = θ_end − θ_b (the end of Task 1), so the
three checkpoints sit at (0, 0), (1, 0) and (1, 1). :func:`loss_landscape` evaluates each task's
answer-token loss (:func:`~spurious_diag.training.evaluate.answer_loss`) at every node of a grid
from :func:`landscape_grid`, which always holds those three anchors exactly;
:func:`project_trajectory` places the training checkpoints on the plane and reports both their
own loss and the loss at their projection (equal for a checkpoint in the plane; the gap shows
what the off-plane part of the trajectory does).

Both functions load weights into the model they are given, one point at a time, and put the
model's own weights back afterwards, also on error. Tensors outside the plane (e.g. the plane
was built with ``names=``) keep the model's values in :func:`loss_landscape` and the
checkpoint's values in :func:`project_trajectory`.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError, MismatchError
from ..geometry.plane import Plane, PlaneInputError, plane_through, point_on, project
from ..training.evaluate import EVAL_BATCH_SIZE, answer_loss
from .records import ProbeRecord, as_probe_records

__all__ = ["LANDSCAPE_COLUMNS", "TRAJECTORY_COLUMNS", "landscape_plane", "landscape_grid", "loss_landscape",
           "project_trajectory"]

logger = logging.getLogger(__name__)

LANDSCAPE_COLUMNS = ["method", "x", "y", "task", "loss"]
TRAJECTORY_COLUMNS = ["method", "step", "x", "y", "residual", "task", "loss", "plane_loss"]

StateDict = Mapping[str, torch.Tensor]

# The plane coordinates of θ_a, θ_b and θ_end.
ANCHORS = ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))


def landscape_plane(theta_a: StateDict, theta_b: StateDict, theta_end: StateDict, *,
                    names: Optional[Iterable[str]] = None) -> Plane:
    """:func:`~spurious_diag.geometry.plane.plane_through`, raising the package's errors.

    Raises:
        MismatchError: the three states disagree on a tensor's presence, dtype kind or shape (named).
        InvalidDataError: d1 or d2 is zero, or they are collinear.
    """
    try:
        return plane_through(theta_a, theta_b, theta_end, names=names)
    except PlaneInputError as exc:
        if exc.kind == "degenerate":
            raise InvalidDataError(exc.reason) from exc
        raise MismatchError(exc.reason, tensor=exc.tensor) from exc


def _axis(lo: float, hi: float, size: int) -> np.ndarray:
    """Nodes i/m, i = floor(lo·m) .. ceil(hi·m), for the smallest integer m giving at least ``size`` nodes."""
    m = 1
    while math.ceil(hi * m) - math.floor(lo * m) + 1 < size:
        m += 1
    # integer numerators over an integer denominator: 0/m and m/m are exactly 0.0 and 1.0
    return np.arange(math.floor(lo * m), math.ceil(hi * m) + 1, dtype=np.int64) / m


def landscape_grid(points_xy: Any = (), *, size: int = 21, margin: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Grid axes (xs, ys) covering ``points_xy`` and the anchors (0, 0), (1, 0), (1, 1), plus a margin.

    Per axis, [lo, hi] is the range of the points' coordinates and of 0 and 1, widened by
    ``margin`` × (hi − lo) on each side. The nodes are the multiples of a step 1/m inside (or
    just outside) that range, with m the smallest integer giving at least ``size`` nodes, so 0
    and 1 are nodes exactly and θ_a, θ_b, θ_end are grid points. An axis spanning more than
    ``size`` units keeps the step 1 and so has more than ``size`` nodes (one per unit).

    Args:
        points_xy: N×2 plane coordinates (e.g. a projected trajectory's ``x``, ``y``); non-finite rows are ignored.
        size: at least this many nodes per axis (≥ 2).
        margin: widening on each side, as a fraction of the covered span (≥ 0).

    Returns:
        xs, ys: ascending float64 arrays.

    >>> xs, ys = landscape_grid([(0.5, -1.0)], size=5, margin=0.0)
    >>> xs.tolist(), ys.tolist()
    ([0.0, 0.25, 0.5, 0.75, 1.0], [-1.0, -0.5, 0.0, 0.5, 1.0])
    """
    if size < 2:
        raise InvalidDataError(f"size must be >= 2, got {size}")
    if not margin >= 0.0:
        raise InvalidDataError(f"margin must be >= 0, got {margin}")
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    points = points[np.isfinite(points).all(axis=1)]
    points = np.concatenate([points, np.asarray(ANCHORS, dtype=np.float64)])
    axes = []
    for column in points.T:
        lo, hi = float(column.min()), float(column.max())
        pad = margin * (hi - lo)
        axes.append(_axis(lo - pad, hi + pad, size))
    return axes[0], axes[1]


def _records_by_task(records_by_task: Mapping[str, Sequence[Any]]) -> dict[str, list[ProbeRecord]]:
    if not records_by_task:
        raise InvalidDataError("no tasks to evaluate")
    out = {}
    for task, records in records_by_task.items():
        if not records:
            raise InvalidDataError(f"task {task!r} has no records")
        out[str(task)] = as_probe_records(records)
    return out


def _check_model(model: torch.nn.Module, plane: Plane) -> dict[str, torch.Tensor]:
    """The model's state dict, after checking that it holds every tensor of the plane with its shape."""
    state = model.state_dict()
    for name in plane.names:
        if name not in state:
            raise MismatchError("tensor of the plane missing from the model", tensor=name)
        if tuple(state[name].shape) != tuple(plane.origin[name].shape):
            raise MismatchError(f"shape {tuple(plane.origin[name].shape)} in the plane, {tuple(state[name].shape)} "
                                "in the model", tensor=name)
    outside = [n for n, t in state.items() if t.is_floating_point() and n not in plane.names]
    if outside:
        logger.info("landscape: %d floating-point tensors of the model are outside the plane (e.g. %s)",
                    len(outside), outside[0])
    return state


def _load(model: torch.nn.Module, state: StateDict, required: Sequence[str], label: str) -> None:
    """Load the entries of ``state`` that the model has; every name in ``required`` must be among them."""
    keys = model.state_dict().keys()
    for name in required:
        if name not in state:
            raise MismatchError(f"tensor of the plane missing from {label}", tensor=name)
    subset = {n: t for n, t in state.items() if n in keys}
    try:
        result = model.load_state_dict(subset, strict=False)
    except RuntimeError as exc:  # a shape mismatch
        raise MismatchError(f"cannot load {label} into the model: {exc}") from exc
    if result.unexpected_keys:  # cannot happen with the subset; kept as the strict check on names
        raise MismatchError(f"unexpected tensors in {label}", tensor=result.unexpected_keys[0])


@contextmanager
def _restoring(model: torch.nn.Module) -> Iterator[None]:
    """Give the model its own weights back when the block ends, also on error."""
    original = {n: t.detach().clone() for n, t in model.state_dict().items()}
    try:
        yield
    finally:
        model.load_state_dict(original, strict=True)


def _losses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tasks: Mapping[str, Sequence[ProbeRecord]],
            batch_size: int) -> dict[str, float]:
    return {task: answer_loss(model, tokenizer, records, batch_size=batch_size) for task, records in tasks.items()}


def _plane_dtype(model: torch.nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


def loss_landscape(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    plane: Plane,
    records_by_task: Mapping[str, Sequence[Any]],
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    method: str = "",
    batch_size: int = EVAL_BATCH_SIZE,
    progress: bool = True,
) -> pd.DataFrame:
    """Each task's answer-token loss at every grid point θ_a + x·d1 + y·d2.

    Args:
        model: causal LM of the plane's architecture; its weights are replaced point by point and
            restored at the end (also on error).
        tokenizer: the model's tokenizer.
        plane: from :func:`landscape_plane`; every one of its tensors must be in the model, same shape.
        records_by_task: task name → prompt/completion records (mappings or objects), e.g.
            ``{"task0": old_test, "task1": new_test}``.
        xs, ys: grid axes (plane coordinates; :func:`landscape_grid`).
        method: label of the run the plane comes from (``SEQ``, ``REPLAY(0.1)``), copied into every row.
        batch_size: sequences per forward pass.
        progress: a ``tqdm`` bar over grid points.

    Returns:
        :data:`LANDSCAPE_COLUMNS`: one row per (x, y, task), x outer, then y, then tasks in input order;
        ``loss`` in nats per answer token.

    Raises:
        MismatchError: a tensor of the plane missing from the model or of another shape.
        InvalidDataError: no tasks, or a task without records.
    """
    tasks = _records_by_task(records_by_task)
    _check_model(model, plane)
    dtype = _plane_dtype(model)
    grid = [(float(x), float(y)) for x in xs for y in ys]
    rows: list[dict[str, Any]] = []
    with _restoring(model):
        for x, y in tqdm(grid, desc="loss landscape", unit="point", disable=not progress):
            _load(model, point_on(plane, x, y, dtype=dtype), plane.names, "the plane point")
            for task, loss in _losses(model, tokenizer, tasks, batch_size).items():
                rows.append({"method": method, "x": x, "y": y, "task": task, "loss": loss})
    logger.info("loss landscape %s: %d points × %d tasks", method or "(unnamed)", len(grid), len(tasks))
    return pd.DataFrame(rows, columns=LANDSCAPE_COLUMNS)


def project_trajectory(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    plane: Plane,
    trajectory: Sequence[tuple[int, StateDict]],
    records_by_task: Mapping[str, Sequence[Any]],
    *,
    method: str = "",
    batch_size: int = EVAL_BATCH_SIZE,
    progress: bool = True,
) -> pd.DataFrame:
    """Checkpoints of a run on the plane: coordinates, off-plane residual, own loss and loss at the projection.

    For each (step, state): ``x``, ``y``, ``residual`` from
    :func:`~spurious_diag.geometry.plane.project`; ``loss`` with the checkpoint's own weights
    loaded (every entry of ``state`` the model has); ``plane_loss`` with the plane's tensors then
    replaced by θ_a + x·d1 + y·d2. For a checkpoint in the plane the two agree.

    Args:
        model: causal LM of the plane's architecture; restored at the end (also on error).
        tokenizer: the model's tokenizer.
        plane: from :func:`landscape_plane`.
        trajectory: (training step, state dict) pairs, e.g. from a chain of Trainer checkpoints; each
            state must hold every tensor of the plane.
        records_by_task: task name → records, as for :func:`loss_landscape`.
        method: run label copied into every row.
        batch_size: sequences per forward pass.
        progress: a ``tqdm`` bar over checkpoints.

    Returns:
        :data:`TRAJECTORY_COLUMNS`: one row per (checkpoint, task), checkpoints in input order.

    Raises:
        MismatchError: a tensor of the plane missing from the model or a checkpoint, or of another shape.
        InvalidDataError: no tasks, or a task without records.
    """
    tasks = _records_by_task(records_by_task)
    _check_model(model, plane)
    dtype = _plane_dtype(model)
    rows: list[dict[str, Any]] = []
    with _restoring(model):
        for step, state in tqdm(trajectory, desc="trajectory", unit="checkpoint", disable=not progress):
            try:
                point = project(plane, state)
            except PlaneInputError as exc:
                raise MismatchError(f"checkpoint at step {step}: {exc.reason}", tensor=exc.tensor) from exc
            _load(model, state, plane.names, f"the checkpoint at step {step}")
            own = _losses(model, tokenizer, tasks, batch_size)
            _load(model, point_on(plane, point.x, point.y, dtype=dtype), plane.names, "the plane point")
            projected = _losses(model, tokenizer, tasks, batch_size)
            for task in tasks:
                rows.append({"method": method, "step": int(step), "x": point.x, "y": point.y,
                             "residual": point.residual, "task": task, "loss": own[task],
                             "plane_loss": projected[task]})
            logger.debug("trajectory step %s: (%.3f, %.3f), residual %.3g", step, point.x, point.y, point.residual)
    return pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)
