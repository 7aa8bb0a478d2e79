"""Loss-landscape figures (the paper's §3.3): a task's loss on the plane through θ_a, θ_b, θ_end, with the
training trajectory projected onto it.

The frames are those of :mod:`spurious_diag.probes.landscape`: ``landscape`` with columns
``method, x, y, task, loss`` (a full x × y grid per method and task) and ``trajectory`` with
``method, step, x, y, residual, task, loss, plane_loss``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._style import PALETTE, SEQUENTIAL_CMAP, new_axes, new_figure, task_label

__all__ = ["landscape_plot", "landscape_panels", "ANCHOR_LABELS"]

# Plane coordinates of the three checkpoints that define the plane, and their names on the figure.
ANCHOR_LABELS = {(0.0, 0.0): "θ_a", (1.0, 0.0): "θ_b", (1.0, 1.0): "θ_end"}

X_LABEL = "x (units of θ_b − θ_a)"
Y_LABEL = "y (units of θ_end − θ_b)"

Levels = Union[int, Sequence[float]]

# Text readable on both ends of the colormap: white with a dark outline.
_OUTLINED = [patheffects.withStroke(linewidth=2.0, foreground="black")]


def _grid(landscape: pd.DataFrame, method: str, task: str) -> pd.DataFrame:
    """Loss as a y × x table (ascending both ways) for one method and task."""
    rows = landscape[(landscape["method"].astype(str) == str(method)) & (landscape["task"].astype(str) == str(task))]
    if rows.empty:
        raise ValueError(f"no landscape rows for method {method!r} and task {task!r}")
    grid = rows.pivot_table(index="y", columns="x", values="loss", aggfunc="mean").sort_index().sort_index(axis=1)
    if grid.isna().to_numpy().any():
        raise ValueError(f"the landscape of method {method!r}, task {task!r} is not a full x × y grid")
    return grid


def _path(trajectory: Optional[pd.DataFrame], method: str, task: str) -> Optional[pd.DataFrame]:
    """One row per checkpoint (step order) of ``method``: that task's rows, or any task's (x, y do not depend on it)."""
    if trajectory is None or trajectory.empty:
        return None
    rows = trajectory[trajectory["method"].astype(str) == str(method)]
    if "task" in rows.columns and (rows["task"].astype(str) == str(task)).any():
        rows = rows[rows["task"].astype(str) == str(task)]
    rows = rows.drop_duplicates(subset="step").sort_values("step", kind="stable")
    return rows if not rows.empty else None


def _step_labels(n: int, max_labels: int = 6) -> list[int]:
    """Indices of the steps to write next to their markers: first, last, and evenly spaced between."""
    if n <= max_labels:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_labels).round().astype(int).tolist()))


def landscape_plot(landscape: pd.DataFrame, trajectory: Optional[pd.DataFrame] = None, *, method: str, task: str,
                   ax: Optional[Axes] = None, levels: Levels = 20) -> Figure:
    """Filled contours of one task's loss over the plane of one method's run, with its trajectory.

    Args:
        landscape: :func:`~spurious_diag.probes.landscape.loss_landscape` frame(s); the rows of
            ``method`` and ``task`` must form a full x × y grid.
        trajectory: :func:`~spurious_diag.probes.landscape.project_trajectory` frame(s), or None; the
            rows of ``method`` are drawn as a line with a marker per checkpoint (a few labelled with
            their step), in step order.
        method: the run to draw (the ``method`` column).
        task: the task whose loss is drawn (the ``task`` column, e.g. ``task0``).
        ax: axes to draw into; a new figure otherwise.
        levels: number of contour levels, or the level boundaries (e.g. shared by several panels).

    Returns:
        The figure: contours over exactly the grid's extent, a colorbar of the loss (nats per
        answer token), θ_a, θ_b, θ_end marked at (0, 0), (1, 0), (1, 1). Nothing is shown or saved.
    """
    grid = _grid(landscape, method, task)
    xs, ys = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
    fig, ax = new_axes(ax, (5.2, 4.2))
    contours = ax.contourf(xs, ys, grid.to_numpy(dtype=float), levels=levels, cmap=SEQUENTIAL_CMAP)
    contours.set_gid("landscape")
    # round ticks, not the level boundaries (shared levels from np.linspace would print as 2.838, 3.756, ...)
    fig.colorbar(contours, ax=ax, label=f"{task_label(task)} loss (nats / answer token)", ticks=MaxNLocator(6))
    path = _path(trajectory, method, task)
    if path is not None:
        px, py = path["x"].to_numpy(dtype=float), path["y"].to_numpy(dtype=float)
        ax.plot(px, py, "-o", color="black", mfc="white", mec="black", mew=0.6, ms=4, lw=1.4, gid="trajectory",
                label="trajectory")
        steps = path["step"].to_numpy()
        # The checkpoints at the anchors are labelled; an evenly spaced label next to one would read as its step.
        at_anchor = [i for i in range(len(path)) if any(abs(px[i] - ax_) < 1e-9 and abs(py[i] - ay) < 1e-9
                                                          for ax_, ay in ANCHOR_LABELS)]
        near = {j for i in at_anchor for j in (i - 1, i + 1)} - set(at_anchor) - {0, len(path) - 1}
        for i in sorted((set(_step_labels(len(path))) - near) | set(at_anchor)):
            ax.annotate(str(steps[i]), (px[i], py[i]), xytext=(4, -9), textcoords="offset points", fontsize=7,
                        color="white", path_effects=_OUTLINED)
    anchors = np.asarray(list(ANCHOR_LABELS), dtype=float)
    ax.plot(anchors[:, 0], anchors[:, 1], ls="none", marker="*", ms=11, color=PALETTE[3], mec="black", mew=0.6,
            gid="anchors", label="θ_a, θ_b, θ_end")
    for (x, y), name in ANCHOR_LABELS.items():
        ax.annotate(name, (x, y), xytext=(5, 5), textcoords="offset points", fontsize=9, color="white",
                    fontweight="bold", path_effects=_OUTLINED)
    ax.set_xlim(xs.min(), xs.max())
    ax.set_ylim(ys.min(), ys.max())
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel(Y_LABEL)
    ax.set_title(f"{method}: {task_label(task)}" if str(method) else task_label(task))
    return fig


def landscape_panels(landscape: pd.DataFrame, trajectory: Optional[pd.DataFrame], *, methods: Sequence[str],
                     tasks: Sequence[str], levels: int = 20) -> Figure:
    """One :func:`landscape_plot` per (task, method): a row per task, a column per method, side by side.

    The panels of one task share their contour levels (from that task's smallest to largest loss
    over the methods drawn), so equal colors mean equal loss across methods.

    Args:
        landscape: loss landscapes of every method in ``methods``.
        trajectory: projected trajectories, or None.
        methods: the columns, left to right (e.g. ``["SEQ", "REPLAY(0.2)"]``).
        tasks: the rows, top to bottom (e.g. ``["task0", "task1"]``).
        levels: contour levels per panel.

    Returns:
        The figure. Nothing is shown or saved.
    """
    methods, tasks = list(methods), list(tasks)
    if not methods or not tasks:
        raise ValueError("landscape_panels needs at least one method and one task")
    fig = new_figure((4.6 * len(methods), 3.8 * len(tasks)))
    axes = fig.subplots(len(tasks), len(methods), squeeze=False)
    for r, task in enumerate(tasks):
        losses = np.concatenate([_grid(landscape, m, task).to_numpy(dtype=float).ravel() for m in methods])
        lo, hi = float(losses.min()), float(losses.max())
        shared = np.linspace(lo, hi if hi > lo else lo + 1e-6, levels + 1)
        for c, method in enumerate(methods):
            landscape_plot(landscape, trajectory, method=method, task=task, ax=axes[r, c], levels=shared)
    return fig
