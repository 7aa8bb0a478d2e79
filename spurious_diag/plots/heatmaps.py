"""Layer-wise forgetting heatmaps from an audit's ``updates`` frame."""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._style import SEQUENTIAL_CMAP, layer_label, layer_order, new_axes

__all__ = ["update_heatmap", "trajectory_heatmap", "MODULE_ORDER"]

# Column order of module heatmaps: attention in, attention out, MLP, norms, then the rest.
MODULE_ORDER = [
    "embed_tokens", "embed_positions",
    "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.qkv_proj", "attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.gate_up_proj", "mlp.down_proj",
    "norm.input", "norm.post_attn", "norm.pre_ffn", "norm.post_ffn", "attn.q_norm", "attn.k_norm",
    "norm.final", "lm_head",
]

_VALUE_LABELS = {
    "rms": "update RMS (weight units)",
    "rel": "relative update ‖ΔW‖/‖W‖",
    "fro": "update ‖ΔW‖_F (weight units)",
}


def _ok(updates: pd.DataFrame) -> pd.DataFrame:
    return updates[(updates["status"] == "ok") & updates["layer"].notna()]


def update_heatmap(updates: pd.DataFrame, update: int = 1, *, value: str = "rms", num_layers: Optional[int] = None,
                   ax: Optional[Axes] = None) -> Figure:
    """Blocks (embeddings at the bottom, head at the top) × modules, colored by the size of one update.

    Args:
        updates: an audit's ``updates`` frame (columns ``update``, ``layer``, ``module``, ``status``, ``value``).
        update: which update (1-based) to show.
        value: ``rms`` (default, comparable across modules), ``rel`` or ``fro``.
        num_layers: the model's block count L, to name layer L ``head`` (default: the largest layer seen, if it
            holds only the final norm / LM head).
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    rows = _ok(updates)
    rows = rows[rows["update"] == update]
    if rows.empty:
        raise ValueError(f"no rows with status 'ok' for update {update}")
    grid = rows.pivot_table(index="layer", columns="module", values=value, aggfunc="mean")
    layers = layer_order(grid.index)[::-1]  # head on top
    modules = [m for m in MODULE_ORDER if m in grid.columns] + sorted(set(grid.columns) - set(MODULE_ORDER))
    grid = grid.reindex(index=layers, columns=modules)
    if num_layers is None:
        top = rows[rows["layer"] == max(layers)]
        num_layers = max(layers) if set(top["module"]) <= {"norm.final", "lm_head"} else None
    fig, ax = new_axes(ax, (1.0 + 0.55 * len(modules), 1.2 + 0.38 * len(layers)))
    sns.heatmap(grid, ax=ax, cmap=SEQUENTIAL_CMAP, mask=grid.isna(), cbar_kws={"label": _VALUE_LABELS.get(value, value)},
                linewidths=0.5, linecolor="white")
    ax.set_yticks(np.arange(len(layers)) + 0.5, [layer_label(x, num_layers) for x in layers], rotation=0)
    ax.set_xticks(np.arange(len(modules)) + 0.5, modules, rotation=45, ha="right")
    ax.set_xlabel("module")
    ax.set_ylabel("layer")
    ax.set_title(f"Update {update}: {value} by layer and module")
    return fig


def trajectory_heatmap(updates: pd.DataFrame, *, steps: Optional[Mapping[int, int]] = None, value: str = "rms",
                       num_layers: Optional[int] = None, ax: Optional[Axes] = None) -> Figure:
    """Layers × training step of a trajectory audit (consecutive Trainer checkpoints), colored by update size.

    Args:
        updates: an audit's ``updates`` frame over a chain of checkpoints.
        steps: update index → the training step it ends at (e.g. from the ``checkpoint-N`` names); the
            update index is used when absent.
        value: ``rms``, ``rel`` or ``fro``, averaged over each layer's tensors.
    """
    rows = _ok(updates)
    grid = rows.pivot_table(index="layer", columns="update", values=value, aggfunc="mean")
    layers = layer_order(grid.index)[::-1]
    grid = grid.reindex(index=layers)
    labels = [str(steps.get(int(u), u)) if steps else str(int(u)) for u in grid.columns]
    fig, ax = new_axes(ax, (1.5 + 0.35 * len(labels), 1.2 + 0.38 * len(layers)))
    sns.heatmap(grid, ax=ax, cmap=SEQUENTIAL_CMAP, cbar_kws={"label": _VALUE_LABELS.get(value, value)})
    ax.set_yticks(np.arange(len(layers)) + 0.5, [layer_label(x, num_layers) for x in layers], rotation=0)
    stride = max(1, len(labels) // 20)
    ax.set_xticks(np.arange(0, len(labels), stride) + 0.5, labels[::stride], rotation=90)
    ax.set_xlabel("training step" if steps else "update")
    ax.set_ylabel("layer")
    ax.set_title(f"Update size ({value}) along training")
    return fig
