"""Principal angles between task updates, per layer, against the random-subspace expectation."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._style import PALETTE, layer_label, layer_order, new_axes

__all__ = ["angle_violins", "random_angle_deg", "window_angles_plot"]


def random_angle_deg(overlap_random: float) -> float:
    """The principal angle whose cos² equals the random-subspace overlap: the angle random updates show."""
    return math.degrees(math.acos(math.sqrt(min(max(overlap_random, 0.0), 1.0))))


def angle_violins(pairs: pd.DataFrame, pair: tuple[int, int] = (1, 2), *, num_layers: Optional[int] = None,
                  ax: Optional[Axes] = None) -> Figure:
    """Mean principal angle (degrees) between two updates' subspaces, one violin per layer.

    Each point is one 2-D tensor (or fused part) of the layer. The dashed line is the angle
    random subspaces of the same ranks would show (from ``overlap_random``): angles near it or
    above mean the task updates are as unrelated as chance; near 0°, they share directions.
    """
    a, b = pair
    rows = pairs[(pairs["update_a"] == a) & (pairs["update_b"] == b) & (pairs["status"] == "ok")
                 & pairs["layer"].notna() & pairs["angle_mean_deg"].notna()].copy()
    if rows.empty:
        raise ValueError(f"no pair rows with angles for updates {a} and {b}")
    layers = layer_order(rows["layer"])
    rows["layer_name"] = [layer_label(int(x), num_layers) for x in rows["layer"]]
    order = [layer_label(x, num_layers) for x in layers]
    fig, ax = new_axes(ax, (1.5 + 0.6 * len(layers), 3.6))
    sns.violinplot(data=rows, x="layer_name", y="angle_mean_deg", order=order, ax=ax, color=PALETTE[0], cut=0,
                   inner=None, density_norm="width")
    sns.stripplot(data=rows, x="layer_name", y="angle_mean_deg", order=order, ax=ax, color="black", size=2.5)
    expected = np.nanmean([random_angle_deg(x) for x in rows["overlap_random"]])
    ax.axhline(expected, ls="--", color=PALETTE[3], label=f"random subspaces ({expected:.0f}°)")
    ax.set_ylim(0, 90)
    ax.set_yticks([0, 15, 30, 45, 60, 75, 90])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"mean principal angle,\nupdate {a} vs {b} (degrees)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(loc="lower right", frameon=False)
    ax.set_title("Orthogonality of task updates by layer")
    return fig


_QUANTITY_LABELS = {"angle_mean_deg": "ours: mean principal angle, top-8 subspaces",
                    "paper_angle_mean_deg": "the paper's: z-scored, 99% energy, one-sided"}


def window_angles_plot(frame: pd.DataFrame, *, value: str = "angle_mean_deg", num_layers: Optional[int] = None,
                       ax: Optional[Axes] = None) -> Figure:
    """Angle per layer (mean over its weights) of each comparison of the weight view.

    Args:
        frame: the weight view (``comparison``, ``layer``, ``status`` and ``value``), e.g.
            ``Task 0 vs early`` (Task 0's update against Task 1's early window) and
            ``early vs rest`` (the early window against the rest of Task 1).
        value: ``angle_mean_deg`` (ours) or ``paper_angle_mean_deg`` (the paper's quantity).
        num_layers: the block count L (names layer L ``head``); default: the largest layer.

    Returns:
        The figure: one line per comparison, the points the per-layer means. Nothing is shown or saved.
    """
    rows = frame[(frame["status"] == "ok") & frame["layer"].notna() & frame[value].notna()]
    if rows.empty:
        raise ValueError(f"no rows with a {value}")
    layers = layer_order(rows["layer"])
    num_layers = int(max(layers)) if num_layers is None else num_layers
    fig, ax = new_axes(ax, (1.5 + 0.6 * len(layers), 3.6))
    for i, (comparison, group) in enumerate(rows.groupby("comparison", sort=False)):
        means = group.groupby("layer")[value].mean().reindex(layers)
        ax.plot(range(len(layers)), means.to_numpy(), marker="o", color=PALETTE[i % len(PALETTE)], label=comparison)
    ax.set_xticks(range(len(layers)), [layer_label(int(x), num_layers) for x in layers], rotation=45, ha="right")
    ax.set_ylim(0, 90)
    ax.set_yticks([0, 15, 30, 45, 60, 75, 90])
    ax.set_xlabel("layer")
    ax.set_ylabel("angle (degrees, mean over the layer's weights)")
    ax.set_title(_QUANTITY_LABELS.get(value, value), fontsize=10)
    ax.legend(loc="lower right", frameon=False, fontsize=8)
    return fig
