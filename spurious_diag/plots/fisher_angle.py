"""EWC vs orthogonality (the paper's §5.1): the old task's Fisher against the update angle, per weight component.

Takes the table of ``spurious_diag.probes.fisher_angle.fisher_angle_table`` (``name``, ``part``,
``layer``, ``module``, ``fisher_mean``, ``angle_deg``, ``status``) and, optionally, the r and p of
``fisher_angle_correlation``. If EWC protected the weights through which the new update
interferes, high-Fisher components would sit at small angles; a flat cloud (the paper: r = 0.054)
says it protects the wrong weights.
"""

from __future__ import annotations

import math
from typing import Optional

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._style import SEQUENTIAL_CMAP, new_axes

__all__ = ["fisher_angle_plot"]

_NO_LAYER = (0.6, 0.6, 0.6, 1.0)


def _finite(x: Optional[float]) -> bool:
    return x is not None and math.isfinite(float(x))


def fisher_angle_plot(table: pd.DataFrame, *, r: Optional[float] = None, p: Optional[float] = None,
                      ax: Optional[Axes] = None) -> Figure:
    """Scatter of each component's mean Fisher (x) against its update angle (y), colored by layer.

    Args:
        table: the Fisher–angle table; only rows whose ``status`` is ``ok`` (when the column
            exists) with both values finite are drawn, in the table's order. The x axis is
            logarithmic when every drawn Fisher mean is positive. Components without a layer
            (``layer`` missing) are grey.
        r, p: the Pearson correlation and its p-value, written in the title (``undefined`` when NaN).
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    rows = table[table["status"] == "ok"] if "status" in table.columns else table
    x = pd.to_numeric(rows["fisher_mean"], errors="coerce").astype(float)
    y = pd.to_numeric(rows["angle_deg"], errors="coerce").astype(float)
    keep = np.isfinite(x.to_numpy()) & np.isfinite(y.to_numpy())
    rows, x, y = rows[keep], x[keep], y[keep]
    if rows.empty:
        raise ValueError("no components with both a Fisher mean and an angle")
    layers = pd.to_numeric(rows["layer"], errors="coerce").astype(float).to_numpy()
    known = np.isfinite(layers)
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    norm = Normalize(float(layers[known].min()), float(layers[known].max())) if known.any() else Normalize(0.0, 1.0)
    if known.any() and norm.vmin == norm.vmax:
        norm = Normalize(norm.vmin - 0.5, norm.vmax + 0.5)
    colors = [cmap(norm(v)) if ok else _NO_LAYER for v, ok in zip(layers, known)]
    fig, ax = new_axes(ax, (6.0, 4.0))
    ax.scatter(x, y, c=colors, s=22, edgecolor="white", linewidth=0.4, gid="components")
    if known.any():
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="layer (−1 = embeddings)")
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    log_x = bool((x > 0).all())
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("mean diagonal Fisher of the old task" + (" (log scale)" if log_x else ""))
    ax.set_ylabel("angle between the updates (degrees)")
    ax.set_ylim(0, 90)
    ax.set_yticks([0, 15, 30, 45, 60, 75, 90])
    title = f"EWC vs orthogonality ({len(rows)} components)"
    if r is not None:
        stat = f"r = {r:.3f}" if _finite(r) else "r undefined"
        if p is not None and _finite(p):
            stat += f", p = {p:.2g}"
        title += f"\nPearson {stat}"
    ax.set_title(title)
    return fig
