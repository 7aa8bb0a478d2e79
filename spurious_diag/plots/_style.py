"""Shared look of every figure: colorblind-safe palettes and the layer axis.

Layers are ordered and named the same way in every figure: embeddings (−1) at the
bottom, blocks 0..L−1, the final norm and LM head (L) at the top.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Optional, Sequence

import matplotlib

# Figures are written to files and never need a display, but a backend chosen through MPLBACKEND
# is kept: Jupyter kernels set it to the inline backend, which switching to Agg would stop showing.
if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["layer_label", "layer_order", "hidden_layer_label", "new_axes", "new_figure", "legend_outside", "task_label",
           "method_order", "method_styles", "freeze_k", "layer_ticks", "PALETTE", "SEQUENTIAL_CMAP", "DIVERGING_CMAP"]

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


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty figure with constrained layout (for functions that lay out several axes)."""
    return plt.figure(figsize=figsize, layout="constrained")


def new_axes(ax: Optional[Axes], figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax``'s figure and ``ax``, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def hidden_layer_label(index: int, num_hidden: Optional[int] = None) -> str:
    """Name of a hidden-state index of the probes' tables (``probes/hidden.py``).

    Index 0 is the embedding output, index l the output of block l − 1; the last index
    (``num_hidden − 1``, when given) is most HF models' output after the final norm.

    >>> [hidden_layer_label(i, 3) for i in range(3)]
    ['embeddings', 'block 0', 'block 1 + norm']
    """
    if index <= 0:
        return "embeddings"
    if num_hidden is not None and index == num_hidden - 1:
        return f"block {index - 1} + norm"
    return f"block {index - 1}"


def layer_ticks(ax: Axes, layers: Sequence[int], labels: Sequence[str], *, max_ticks: int = 16) -> None:
    """Integer layer positions on the x axis, thinned to at most ``max_ticks`` labels (first and last kept)."""
    stride = max(1, -(-len(layers) // max_ticks))
    keep = list(range(0, len(layers), stride))
    if keep[-1] != len(layers) - 1:
        keep.append(len(layers) - 1)
    ax.set_xticks([layers[i] for i in keep], [labels[i] for i in keep], rotation=45, ha="right")


def task_label(name: Any) -> str:
    """``task0`` → ``Task 0``; any other name unchanged.

    >>> task_label("task1"), task_label("qa")
    ('Task 1', 'qa')
    """
    match = re.fullmatch(r"task[ _-]?(\d+)", str(name), flags=re.IGNORECASE)
    return f"Task {match.group(1)}" if match else str(name)


_FREEZE = re.compile(r"^\s*freeze\s*\(\s*(\d+)\s*\)\s*$", re.IGNORECASE)
_KIND_RANK = {"seq": 0, "freeze": 1, "replay": 2, "mix": 3, "ewc": 4, "gp": 5, "lamol": 6}


def freeze_k(label: Any) -> Optional[int]:
    """k of a ``Freeze(k)`` method label, None for any other method.

    >>> freeze_k("Freeze(3)"), freeze_k("SEQ")
    (3, None)
    """
    match = _FREEZE.match(str(label))
    return int(match.group(1)) if match else None


def _method_key(label: str, position: int) -> tuple[int, float, int]:
    match = re.match(r"^\s*([A-Za-z]+)\s*(?:\(\s*([^()]*)\s*\))?", label)
    kind = match.group(1).lower() if match else ""
    try:
        param = float(match.group(2)) if match and match.group(2) else 0.0
    except ValueError:
        param = 0.0
    return _KIND_RANK.get(kind, len(_KIND_RANK)), param, position


def method_order(labels: Iterable[Any]) -> list[str]:
    """Distinct method labels: SEQ, Freeze(k) by k, REPLAY, MIX, EWC by λ, GP, LAMOL, then the rest as first seen.

    >>> method_order(["EWC(1e6)", "Freeze(10)", "SEQ", "Freeze(2)", "REPLAY(0.1)"])
    ['SEQ', 'Freeze(2)', 'Freeze(10)', 'REPLAY(0.1)', 'EWC(1e6)']
    """
    distinct = list(dict.fromkeys(str(x) for x in labels))
    return sorted(distinct, key=lambda m: _method_key(m, distinct.index(m)))


def method_styles(labels: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Line style of each method: SEQ black; Freeze(k) solid, a viridis shade fixed by k (darker = fewer
    blocks frozen); other methods in the colorblind palette (in legend order), dashed / dash-dotted."""
    ordered = method_order(labels)
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    others = iter([PALETTE[i] for i in (1, 3, 4, 5, 6, 8, 9, 7)] * 4)
    styles: dict[str, dict[str, Any]] = {}
    for m in ordered:
        if m.upper() == "SEQ":
            styles[m] = {"color": "black", "ls": "-", "lw": 2.0}
        elif freeze_k(m) is not None:
            # a fixed shade per k (not per rank among those drawn), so Freeze(k) looks the same in every figure
            shade = 0.1 + 0.78 * (1.0 - 0.6 ** freeze_k(m))  # type: ignore[operator]
            styles[m] = {"color": tuple(cmap(shade)), "ls": "-", "lw": 1.6}
        else:
            styles[m] = {"color": next(others), "ls": "--" if m.lower().startswith("replay") else "-.", "lw": 1.4}
    return styles


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """Legend to the right of the axes, so it never covers data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False, **kwargs)
