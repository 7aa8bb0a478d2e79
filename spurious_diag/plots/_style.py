"""Shared look of every figure: colorblind-safe palettes and the layer axis.

Layers are ordered and named the same way in every figure: embeddings (−1) at the
bottom, blocks 0..L−1, the final norm and LM head (L) at the top.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # figures are written to files; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["layer_label", "layer_order", "new_axes", "PALETTE", "SEQUENTIAL_CMAP", "DIVERGING_CMAP"]

PALETTE = sns.color_palette("colorblind")
SEQUENTIAL_CMAP = "viridis"  # perceptually uniform, colorblind-safe, prints in grey
DIVERGING_CMAP = "cividis"


def layer_label(layer: int, num_layers: Optional[int] = None) -> str:
    """``embeddings``, ``block i`` or ``head`` (the final norm and LM head)."""
    if layer < 0:
        return "embeddings"
    if num_layers is not None and layer >= num_layers:
        return "head"
    return f"block {layer}"


def layer_order(layers: Sequence[Any]) -> list[int]:
    """Distinct integer layers, ascending: embeddings first, head last."""
    return sorted({int(x) for x in layers if x is not None and x == x})


def new_axes(ax: Optional[Axes], figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax``'s figure and ``ax``, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax
