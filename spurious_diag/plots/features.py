"""Figures of the feature view (``spurious_diag.probes.feature_view``; the paper's §3.5).

Both take the :class:`FeatureView <spurious_diag.probes.feature_view.FeatureView>` frames:
``points`` (``window``, ``attribute``, ``layer``, ``which`` (before / after), ``person_id``,
``pc1``, ``pc2``) and ``summary`` (``window``, ``attribute``, ``layer``, ``n``, ``mean_shift``,
``mean_shift_rel``, ``pc_angle_deg``). Layers are hidden-state indices (0 = embeddings, l =
output of block l − 1), named with :func:`._style.hidden_layer_label`; the last index present in
``summary`` is taken as the last hidden state (after the final norm).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._style import PALETTE, SEQUENTIAL_CMAP, hidden_layer_label, legend_outside, new_axes

__all__ = ["feature_view_plot", "feature_shift_heatmap", "FEATURE_VALUE_FORMATS"]

_COLORS = {"before": PALETTE[0], "after": PALETTE[3]}

# How each summary value is written in the heatmap's cells (format spec) and named on its colorbar.
FEATURE_VALUE_FORMATS = {"pc_angle_deg": ".1f", "mean_shift": ".3g", "mean_shift_rel": ".2f", "n": ".0f"}
_VALUE_LABELS = {
    "pc_angle_deg": "first-PC angle (degrees)",
    "mean_shift": "mean shift ‖Δμ‖ (hidden-state units)",
    "mean_shift_rel": "relative mean shift ‖Δμ‖/‖μ‖ (ratio)",
    "n": "records",
}
_VALUE_TITLES = {"pc_angle_deg": "first-PC angle", "mean_shift": "mean shift", "mean_shift_rel": "relative mean shift",
                 "n": "records"}


def _window(frame: pd.DataFrame, window: str, what: str) -> pd.DataFrame:
    rows = frame[frame["window"] == window]
    if rows.empty:
        raise ValueError(f"no {what} rows for window {window!r}; windows there: {list(dict.fromkeys(frame['window']))}")
    return rows


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else "undefined"


def feature_view_plot(points: pd.DataFrame, summary: pd.DataFrame, *, attribute: str, layer: int, window: str,
                      ax: Optional[Axes] = None) -> Figure:
    """The before and after clouds of one attribute and layer on the before cloud's PC1/PC2.

    The PCA is the before cloud's, so the after cloud's displacement is the window's mean shift
    as seen in that plane; the arrow runs from the before mean to the after mean (the full shift
    may be longer: the title gives ‖Δμ‖ in all D dimensions, and the angle between the clouds'
    first principal directions).

    Args:
        points: the feature view's ``points`` frame.
        summary: its ``summary`` frame (for the title).
        attribute, layer, window: which cloud pair.
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    rows = _window(points, window, "points")
    rows = rows[(rows["attribute"] == attribute) & (rows["layer"] == layer)]
    if rows.empty:
        raise ValueError(f"no points for attribute {attribute!r}, layer {layer} in window {window!r}")
    windowed = _window(summary, window, "summary")
    facts = windowed[(windowed["attribute"] == attribute) & (windowed["layer"] == layer)]
    fig, ax = new_axes(ax, (5.6, 4.2))
    means = {}
    for which in ("before", "after"):
        cloud = rows[rows["which"] == which]
        if cloud.empty:
            continue
        ax.scatter(cloud["pc1"], cloud["pc2"], s=14, alpha=0.6, color=_COLORS[which], edgecolor="none",
                   label=f"{which} (n = {len(cloud)})", gid=which)
        means[which] = (float(cloud["pc1"].mean()), float(cloud["pc2"].mean()))
    if len(means) == 2 and all(math.isfinite(v) for m in means.values() for v in m):
        ax.annotate("", xy=means["after"], xytext=means["before"], gid="mean_shift",
                    arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.6, "shrinkA": 0, "shrinkB": 0})
        ax.plot([], [], color="black", lw=1.6, label="mean shift (before → after)")
    num_hidden = int(windowed["layer"].max()) + 1
    title = f"{window}: {attribute}, {hidden_layer_label(int(layer), num_hidden)}"
    if not facts.empty:
        angle, shift = float(facts["pc_angle_deg"].iloc[0]), float(facts["mean_shift"].iloc[0])
        title += f"\nPC angle {_fmt(angle, '.1f')}°, mean shift {_fmt(shift, '.3g')}"
    ax.set_title(title)
    ax.set_xlabel("PC1 of the before states")
    ax.set_ylabel("PC2 of the before states")
    ax.axhline(0.0, color="0.85", lw=0.6, zorder=0, gid="reference")
    ax.axvline(0.0, color="0.85", lw=0.6, zorder=0, gid="reference")
    legend_outside(ax, fontsize=9)
    return fig


def feature_shift_heatmap(summary: pd.DataFrame, *, window: str, value: str = "pc_angle_deg",
                          ax: Optional[Axes] = None) -> Figure:
    """Attributes × layers of one window, colored and annotated with one summary value.

    Cells are written with :data:`FEATURE_VALUE_FORMATS` (e.g. angles to 0.1°); undefined
    values (NaN, e.g. the angle at the embedding layer, where every prompt ends with the same
    token) are left blank.

    Args:
        summary: the feature view's ``summary`` frame.
        window: which window.
        value: ``pc_angle_deg`` (default; color scale 0–90°), ``mean_shift``, ``mean_shift_rel`` or ``n``.
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    if value not in summary.columns:
        raise ValueError(f"no column {value!r} in the summary frame")
    rows = _window(summary, window, "summary")
    attributes = list(dict.fromkeys(rows["attribute"].astype(str)))
    layers = sorted({int(x) for x in rows["layer"]})
    grid = (rows.assign(attribute=rows["attribute"].astype(str))
            .pivot_table(index="attribute", columns="layer", values=value, aggfunc="mean", dropna=False)
            .reindex(index=attributes, columns=layers).astype(float))
    spec = FEATURE_VALUE_FORMATS.get(value, ".3g")
    bounds = {"vmin": 0.0, "vmax": 90.0} if value == "pc_angle_deg" else {}
    fig, ax = new_axes(ax, (1.8 + 0.7 * len(layers), 1.2 + 0.45 * len(attributes)))
    sns.heatmap(grid, ax=ax, cmap=SEQUENTIAL_CMAP, mask=grid.isna(), annot=True, fmt=spec, annot_kws={"fontsize": 8},
                cbar_kws={"label": _VALUE_LABELS.get(value, value)}, linewidths=0.5, linecolor="white", **bounds)
    ax.set_yticks(np.arange(len(attributes)) + 0.5, attributes, rotation=0)
    ax.set_xticks(np.arange(len(layers)) + 0.5, [hidden_layer_label(x, max(layers) + 1) for x in layers],
                  rotation=45, ha="right")
    ax.set_xlabel("residual stream after (layer)")
    ax.set_ylabel("attribute")
    ax.set_title(f"Feature shift, {window}: {_VALUE_TITLES.get(value, value)}")
    return fig
