"""Where and when the old task was lost: the forgetting map, the probe map and recovery over time.

Frames in (from :mod:`spurious_diag.probes.forgetting_map` and
:mod:`spurious_diag.probes.recovery_curve`, or their CSVs), figures out.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._style import PALETTE, SEQUENTIAL_CMAP, layer_label, layer_order, legend_outside, new_axes

__all__ = ["forgetting_map_heatmap", "probe_map_heatmap", "recovery_by_step_plot", "map_grid"]

_ARM_TITLES = {
    "single": "Old task restored by reverting one layer",
    "bottom": "Old task restored by reverting the bottom layers up to this one",
}


def map_grid(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Layer (rows, head on top) × step (columns, ascending) grid of ``value`` (mean per cell)."""
    grid = frame.pivot_table(index="layer", columns="step", values=value, aggfunc="mean", dropna=False)
    return grid.reindex(index=layer_order(grid.index)[::-1], columns=sorted(grid.columns))


def _mark_steps(ax: Axes, steps: Sequence[int], dip_step: Optional[int], window: Optional[int]) -> None:
    """Box the columns of the first ``window`` steps and draw a line through the dip's column."""
    steps = list(steps)
    if window is not None:
        inside = [i for i, s in enumerate(steps) if 0 < s <= window]
        if inside:
            ax.axvspan(inside[0], inside[-1] + 1, ymin=0.0, ymax=1.0, fill=False, edgecolor=PALETTE[1], lw=2.0,
                       label=f"first {window} steps")
    if dip_step is not None and dip_step in steps:
        x = steps.index(dip_step) + 0.5
        ax.axvline(x, color=PALETTE[3], lw=2.0, ls="--", label=f"dip (step {dip_step})")
    if window is not None or dip_step is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.22), ncol=2, frameon=False, fontsize=8)


def _layer_heatmap(grid: pd.DataFrame, ax: Axes, *, num_layers: Optional[int], label: str, vmin: float, vmax: float,
                   fmt: str, annotate: bool) -> None:
    sns.heatmap(grid, ax=ax, cmap=SEQUENTIAL_CMAP, vmin=vmin, vmax=vmax, mask=grid.isna(), annot=annotate, fmt=fmt,
                annot_kws={"fontsize": 6}, cbar_kws={"label": label}, linewidths=0.3, linecolor="white")
    ax.set_yticks(np.arange(len(grid.index)) + 0.5, [layer_label(int(x), num_layers) for x in grid.index],
                  rotation=0)
    ax.set_xticks(np.arange(len(grid.columns)) + 0.5, [str(int(s)) for s in grid.columns], rotation=90)
    ax.set_xlabel("step of the new task")
    ax.set_ylabel("layer")


def forgetting_map_heatmap(
    frame: pd.DataFrame,
    *,
    arm: str = "single",
    value: str = "restored",
    dip_step: Optional[int] = None,
    window: Optional[int] = 150,
    num_layers: Optional[int] = None,
    annotate: bool = True,
    ax: Optional[Axes] = None,
) -> Figure:
    """Layer × step heatmap of one arm of the forgetting map.

    Args:
        frame: a forgetting map (``step``, ``arm``, ``layer``, ``restored``, ``acc``, ...).
        arm: ``single`` (layer l alone reverted) or ``bottom`` (layers −1..l reverted together).
        value: ``restored`` (fraction of the lost old-task accuracy brought back; NaN cells,
            where almost nothing was lost, are left blank) or ``acc``.
        dip_step: the step of the old task's dip (a dashed line through its column).
        window: box the columns of steps 1..window (the paper's first 150 steps); None: no box.
        num_layers: the block count L (names row L ``head``); default: the largest layer.
        annotate: write each cell's value (two decimals).

    Returns:
        The figure. Nothing is shown or saved.
    """
    rows = frame[frame["arm"] == arm]
    if rows.empty:
        raise ValueError(f"no rows of arm {arm!r}; arms present: {sorted(frame['arm'].unique())}")
    grid = map_grid(rows, value)
    num_layers = int(max(grid.index)) if num_layers is None else num_layers
    fig, ax = new_axes(ax, (max(6.0, 2.5 + 0.42 * len(grid.columns)), max(3.2, 1.8 + 0.45 * len(grid.index))))
    vmin, vmax = (0.0, 1.0) if value in ("restored", "acc") else (np.nanmin(grid.to_numpy()),
                                                                  np.nanmax(grid.to_numpy()))
    label = "restored fraction" if value == "restored" else "old-task exact match" if value == "acc" else value
    _layer_heatmap(grid, ax, num_layers=num_layers, label=label, vmin=vmin, vmax=vmax, fmt=".2f", annotate=annotate)
    _mark_steps(ax, grid.columns, dip_step, window)
    ax.set_title(_ARM_TITLES.get(arm, arm) if value == "restored" else f"Old task with layers reverted ({arm})")
    return fig


def probe_map_heatmap(frame: pd.DataFrame, *, dip_step: Optional[int] = None, window: Optional[int] = 150,
                      annotate: bool = True, ax: Optional[Axes] = None) -> Figure:
    """Layer × step heatmap of the linear probe's accuracy (mean over attributes).

    Args:
        frame: a probe map (``step``, ``attribute``, ``layer``, ``acc``; layer −1 = embedding
            output, l = output of block l, the last one after the final norm).
        dip_step, window, annotate: as in :func:`forgetting_map_heatmap`.
    """
    if frame.empty:
        raise ValueError("empty probe map")
    grid = map_grid(frame, "acc")
    fig, ax = new_axes(ax, (max(6.0, 2.5 + 0.42 * len(grid.columns)), max(3.2, 1.8 + 0.45 * len(grid.index))))
    _layer_heatmap(grid, ax, num_layers=None, label="linear-probe accuracy (mean over attributes)",
                   vmin=0.0, vmax=1.0, fmt=".2f", annotate=annotate)
    ax.set_yticks(np.arange(len(grid.index)) + 0.5,
                  [("embedding output" if x < 0 else f"after block {int(x)}") for x in grid.index], rotation=0)
    _mark_steps(ax, grid.columns, dip_step, window)
    ax.set_title("Is the old task still linearly decodable? (held-out people)")
    return fig


def recovery_by_step_plot(
    frame: pd.DataFrame,
    *,
    ns: Optional[Sequence[int]] = None,
    dip_step: Optional[int] = None,
    window: Optional[int] = 150,
    ax: Optional[Axes] = None,
) -> Figure:
    """Recovery fraction over the steps of the new task, one line per n, the control dashed.

    Args:
        frame: a recovery-by-step frame (``step``, ``n``, ``fraction``, ``control_fraction``).
        ns: which n to draw (default all).
        dip_step: a vertical line at the dip; window: shade steps 0..window.

    Returns:
        The figure. Nothing is shown or saved.
    """
    if frame.empty:
        raise ValueError("empty recovery-by-step frame")
    fig, ax = new_axes(ax, (6.4, 3.6))
    chosen = sorted(frame["n"].unique()) if ns is None else list(ns)
    for i, n in enumerate(chosen):
        rows = frame[frame["n"] == n].sort_values("step")
        color = PALETTE[i % len(PALETTE)]
        ax.plot(rows["step"], rows["fraction"], marker="o", ms=3, color=color, label=f"recovered, n = {n}")
        ax.plot(rows["step"], rows["control_fraction"], ls="--", color=color, alpha=0.8,
                label=f"never-aligned control, n = {n}")
    if window is not None:
        ax.axvspan(0, window, color=PALETTE[1], alpha=0.08, label=f"first {window} steps")
    if dip_step is not None:
        ax.axvline(dip_step, color=PALETTE[3], ls=":", label=f"dip (step {dip_step})")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("step of the new task (recovery starts from this checkpoint)")
    ax.set_ylabel("recovery fraction")
    ax.set_title("Is the old task still recoverable?")
    legend_outside(ax, fontsize=8)
    return fig
