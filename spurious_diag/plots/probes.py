"""Figures of the knowledge probes (``spurious_diag.probes``): is the old task's knowledge still there?

Each function takes one of the frames of :attr:`Diagnosis.frames <spurious_diag.probes.Diagnosis>`
(``recovery``, ``format`` / ``format_overall``, ``linear_probe``, ``grafting``,
``residual_shift``). Probe tables index hidden states 0..L (0 = embeddings, l = output of block
l − 1), named with :func:`._style.hidden_layer_label`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._style import (
    PALETTE,
    hidden_layer_label,
    layer_ticks,
    legend_outside,
    new_axes,
    new_figure,
)

__all__ = ["recovery_curve", "format_probe_plot", "linear_probe_plot", "grafting_curve_plot", "residual_shift_plot"]

_MODEL_ORDER = ["before", "after", "forgot", "control", "base"]
_MODEL_NAMES = {"forgot": "forgotten model", "control": "control (never learned the old task)",
                "base": "base (pretrained)"}
_REFERENCE = {"color": "0.35", "lw": 1.2}


def _models_in_order(values: pd.Series) -> list[str]:
    seen = list(dict.fromkeys(values.astype(str)))
    return [m for m in _MODEL_ORDER if m in seen] + [m for m in seen if m not in _MODEL_ORDER]


def _model_colors(models: Sequence[str]) -> dict[str, tuple]:
    fixed = {"before": PALETTE[0], "after": PALETTE[3], "forgot": PALETTE[3], "control": PALETTE[7],
             "base": PALETTE[7]}
    spare = iter([PALETTE[i] for i in (2, 4, 1, 5, 6, 8, 9)] * 3)
    return {m: fixed[m] if m in fixed else next(spare) for m in models}


def _finite(x: Optional[float]) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating)) and math.isfinite(float(x))


def _acc_before_from_fractions(rows: pd.DataFrame, acc_forgot: float) -> Optional[float]:
    """acc_before implied by a row's recovery fraction: frac = (acc − acc_forgot) / (acc_before − acc_forgot)."""
    usable = rows[rows["recovery_fraction"].notna() & (rows["recovery_fraction"].abs() > 1e-9)
                  & ((rows["acc"] - acc_forgot).abs() > 1e-9)]
    if usable.empty:
        return None
    row = usable.iloc[0]
    return float(acc_forgot + (row["acc"] - acc_forgot) / row["recovery_fraction"])


def _short_float(x: float) -> str:
    """``1e-4`` rather than ``0.0001``; ``%g`` for ordinary magnitudes.

    >>> _short_float(1e-4), _short_float(1.5e-4), _short_float(0.003)
    ('1e-4', '1.5e-4', '0.003')
    """
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:g}"
    mantissa, exponent = f"{x:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def recovery_curve(recovery: pd.DataFrame, *, acc_before: Optional[float] = None, acc_after: Optional[float] = None,
                   ax: Optional[Axes] = None) -> Figure:
    """Old-task accuracy after recovery with n examples about other individuals, forgotten model vs control.

    The forgotten model rising well above the control (a model that never learned the old task,
    recovered identically) means the facts were still there; both rising alike means the recovery
    set teaches the task by itself.

    Args:
        recovery: the ``recovery`` frame (``RECOVERY_COLUMNS``: ``n``, ``model`` (``forgot`` /
            ``control``), ``acc_start``, ``acc``, ``recovery_fraction``, ``steps``, ``lr``); n = 0
            rows are the unrecovered models.
        acc_before: old-task accuracy before the new task (dashed line). Default: implied by the
            frame's recovery fractions, when one is defined.
        acc_after: the forgotten model before recovery (dotted line). Default: its n = 0 row.
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    if recovery.empty:
        raise ValueError("empty recovery frame")
    table = recovery.groupby(["model", "n"], as_index=False)["acc"].mean()
    models = _models_in_order(table["model"])
    colors = _model_colors(models)
    forgot = recovery[recovery["model"] == "forgot"]
    if acc_after is None and not forgot.empty:
        acc_after = float(forgot["acc_start"].iloc[0])
    if acc_before is None and _finite(acc_after) and "recovery_fraction" in recovery.columns:
        acc_before = _acc_before_from_fractions(forgot, float(acc_after))  # type: ignore[arg-type]
    fig, ax = new_axes(ax, (7.0, 3.6))
    for model in models:
        line = table[table["model"] == model].sort_values("n")
        ax.plot(line["n"], line["acc"], marker="o", color=colors[model], lw=1.8, label=_MODEL_NAMES.get(model, model))
    if _finite(acc_before):
        ax.axhline(float(acc_before), ls="--", gid="reference", label=f"before the new task ({acc_before:.2f})",
                   **_REFERENCE)
    if _finite(acc_after):
        ax.axhline(float(acc_after), ls=":", gid="reference", label=f"after, unrecovered ({acc_after:.2f})",
                   **_REFERENCE)
    ax.set_xticks(sorted(int(n) for n in table["n"].unique()))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recovery examples n (about other individuals)")
    ax.set_ylabel("old-task exact match (fraction)")
    title = "Recovery"
    if {"steps", "lr"} <= set(recovery.columns):
        trained = recovery[recovery["n"] > 0]
        if not trained.empty and trained["steps"].nunique() == 1 and trained["lr"].nunique() == 1:
            title += f" ({int(trained['steps'].iloc[0])} steps, lr {_short_float(float(trained['lr'].iloc[0]))})"
    ax.set_title(title)
    legend_outside(ax, fontsize=9)
    return fig


_FORMAT_METRICS = {
    "exact_match": "exact match (fraction)",
    "first_token_acc": "first-token accuracy (fraction)",
    "first_token_prob": "first-token probability",
    "top1": "truth ranked first among candidates (fraction)",
    "mrr": "mean reciprocal rank of the truth",
    "mean_rank": "mean rank of the truth (1 = best)",
}


def format_probe_plot(frame: pd.DataFrame, *, metric: str = "exact_match", attribute: Optional[str] = None,
                      models: Optional[Sequence[str]] = None, ax: Optional[Axes] = None) -> Figure:
    """The same facts asked in the task format and the pretraining format: grouped bars per model.

    Knowledge intact and alignment lost shows as the *after* model keeping its pretraining-format
    bar while its task-format bar falls.

    Args:
        frame: the format probe's ``overall`` frame (``format_overall``: ``model``, ``format``
            (``task`` / ``pretraining``), ``exact_match``, ``first_token_acc``, ..., ``top1``,
            ``chance_top1``) or its ``per_attribute`` frame (``format``; the same with
            ``attribute``), averaged over attributes unless ``attribute`` is given.
        metric: the column drawn; with ``top1`` the chance of a random ranking is a dashed line.
        attribute: one attribute of a ``per_attribute`` frame.
        models: which models, in order (default before, after, base, then the rest).
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    rows = frame
    if attribute is not None:
        if "attribute" not in rows.columns:
            raise ValueError("attribute= needs the per_attribute frame")
        rows = rows[rows["attribute"] == attribute]
    if metric not in rows.columns:
        raise ValueError(f"no column {metric!r} in the frame")
    if rows.empty:
        raise ValueError("no format-probe rows")
    numeric = [c for c in (metric, "chance_top1") if c in rows.columns]
    table = rows.groupby(["model", "format"], as_index=False)[numeric].mean()
    chosen = list(models) if models is not None else _models_in_order(table["model"])
    formats = [f for f in ("task", "pretraining") if f in set(table["format"])]
    formats += sorted(set(table["format"]) - set(formats))
    fmt_style = {"task": {"color": PALETTE[0], "hatch": ""}, "pretraining": {"color": PALETTE[2], "hatch": "//"}}
    fig, ax = new_axes(ax, (max(4.8, 2.8 + 1.1 * len(chosen)), 3.6))
    width = 0.8 / len(formats)
    x = np.arange(len(chosen))
    for i, fmt in enumerate(formats):
        values = [table[(table["model"] == m) & (table["format"] == fmt)][metric] for m in chosen]
        heights = [float(v.iloc[0]) if len(v) else np.nan for v in values]
        style = fmt_style.get(fmt, {"color": PALETTE[(4 + i) % len(PALETTE)], "hatch": ".."})
        bars = ax.bar(x + (i - (len(formats) - 1) / 2) * width, heights, width * 0.95, label=f"{fmt} format",
                      color=style["color"], hatch=style["hatch"], edgecolor="white", lw=0.5)
        ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=1)
    if metric == "top1" and "chance_top1" in table.columns:
        ax.axhline(float(table["chance_top1"].mean()), ls="--", gid="reference", label="random ranking (chance)",
                   **_REFERENCE)
    ax.set_xticks(x, [_MODEL_NAMES.get(m, m) for m in chosen])
    ax.set_xlabel("model")
    ax.set_ylabel(_FORMAT_METRICS.get(metric, metric))
    if metric != "mean_rank":
        ax.set_ylim(0, 1.1)  # room for the bar labels above 1.0
    ax.set_title("Format probe" + (f": {attribute}" if attribute else ""))
    legend_outside(ax, fontsize=9)
    return fig


def linear_probe_plot(probe: pd.DataFrame, *, attribute: Optional[str] = None, shuffled: bool = True,
                      ax: Optional[Axes] = None) -> Figure:
    """Linear-probe accuracy per layer, one line per model, with chance (dashed) and shuffled labels (dotted).

    Args:
        probe: the ``linear_probe`` frame (``PROBE_COLUMNS``: ``model``, ``attribute``, ``layer``
            (hidden-state index, 0 = embeddings), ``acc``, ``acc_shuffled``, ``chance_majority``,
            ``chance_uniform``, ...), averaged over attributes unless ``attribute`` is given.
        attribute: one attribute.
        shuffled: draw the shuffled-label control (mean over models).
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    rows = probe if attribute is None else probe[probe["attribute"] == attribute]
    if rows.empty:
        raise ValueError("no linear-probe rows" + (f" for attribute {attribute!r}" if attribute else ""))
    rows = rows.assign(chance=rows[["chance_majority", "chance_uniform"]].max(axis=1))
    table = rows.groupby(["model", "layer"], as_index=False)[["acc", "acc_shuffled", "chance"]].mean()
    layers = sorted(int(x) for x in table["layer"].unique())
    models = _models_in_order(table["model"])
    colors = _model_colors(models)
    fig, ax = new_axes(ax, (max(5.6, 3.4 + 0.35 * len(layers)), 3.6))
    for model in models:
        line = table[table["model"] == model].sort_values("layer")
        ax.plot(line["layer"], line["acc"], marker="o", markersize=4, color=colors[model], lw=1.8,
                label=_MODEL_NAMES.get(model, model))
    by_layer = table.groupby("layer")[["acc_shuffled", "chance"]].mean()
    if shuffled:
        ax.plot(by_layer.index, by_layer["acc_shuffled"], ls=":", gid="reference", label="shuffled labels (control)",
                **_REFERENCE)
    ax.axhline(float(by_layer["chance"].mean()), ls="--", gid="reference", label="chance (majority class)",
               **_REFERENCE)
    layer_ticks(ax, layers, [hidden_layer_label(x, max(layers) + 1) for x in layers])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("residual stream after (layer)")
    ax.set_ylabel("held-out probe accuracy (fraction)")
    n_attributes = rows["attribute"].nunique()
    ax.set_title("Linear probes: " + (attribute if attribute else f"mean of {n_attributes} attributes"))
    legend_outside(ax, fontsize=9)
    return fig


def grafting_curve_plot(grafting: pd.DataFrame, *, acc_before: Optional[float] = None,
                        ax: Optional[Axes] = None) -> Figure:
    """Old- and new-task accuracy after grafting k pre-new-task blocks into the post-new-task model.

    Bottom arm (blocks [0, k)) solid, top arm (blocks [L − k, L)) dashed; both start at k = 0,
    the post-new-task model itself. The embeddings-only graft is a star at k = 0. When bottom
    grafts restore the old task and top grafts of the same size do not, what was lost sits in
    the bottom blocks, the ones Freeze(k) keeps.

    Args:
        grafting: the ``grafting`` frame (``GRAFT_COLUMNS``: ``arm`` (bottom / top / embeddings),
            ``k``, ``old_acc``, ``new_acc`` (NaN when not measured), ``status``; rows whose
            ``status`` is not ``ok`` are skipped).
        acc_before: the old task before the new task, drawn as a dashed line.
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    rows = grafting[grafting["status"] == "ok"] if "status" in grafting.columns else grafting
    bottom = rows[rows["arm"] == "bottom"].sort_values("k")
    if bottom.empty:
        raise ValueError("no bottom-arm rows with status 'ok'")
    top = rows[rows["arm"] == "top"]
    if not top.empty:  # top k = 0 is the ungrafted model, the bottom arm's k = 0
        top = pd.concat([bottom[bottom["k"] == 0], top]).sort_values("k")
    emb = rows[rows["arm"] == "embeddings"]
    fig, ax = new_axes(ax, (6.0, 3.6))
    tasks = [("old_acc", "old task", PALETTE[0]), ("new_acc", "new task", PALETTE[1])]
    for column, name, color in tasks:
        if bottom[column].isna().all():
            continue
        ax.plot(bottom["k"], bottom[column], color=color, ls="-", marker="o", lw=1.8, label=f"{name}, bottom k blocks")
        if not top.empty:
            ax.plot(top["k"], top[column], color=color, ls="--", marker="s", lw=1.4, label=f"{name}, top k blocks")
        if not emb.empty and emb[column].notna().any():
            ax.scatter([0] * len(emb), emb[column], marker="*", s=160, color=color, edgecolor="black", linewidth=0.6,
                       zorder=3, label=f"{name}, embeddings only")
    if _finite(acc_before):
        ax.axhline(float(acc_before), ls="--", gid="reference", label=f"old task before ({acc_before:.2f})",
                   **_REFERENCE)
    ks = sorted(int(k) for k in pd.concat([bottom["k"], top["k"] if not top.empty else bottom["k"]]).unique())
    stride = max(1, -(-len(ks) // 16))
    ax.set_xticks(ks[::stride])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("blocks grafted from before the new task (k)")
    ax.set_ylabel("exact match (fraction)")
    ax.set_title("Layer grafting")
    legend_outside(ax, fontsize=9)
    return fig


_SHIFT_PANELS = {
    "shift": ("relative mean shift\n‖Δμ‖/‖μ‖ (ratio)", [("mean_shift_rel", "-", "mean shift")]),
    "cka": ("linear CKA\n(1 = same up to rotation)", [("cka", "-", "CKA"), ("cka_debiased", "--", "debiased CKA")]),
    "angle": ("first-PC angle\n(degrees)", [("pc1_angle_deg", "-", "PC1 angle")]),
}


def residual_shift_plot(shift: pd.DataFrame, *, panels: Sequence[str] = ("shift", "cka", "angle"),
                        fig: Optional[Figure] = None, ax: Optional[Axes] = None) -> Figure:
    """How far the residual stream moved per layer: relative mean shift, CKA and first-PC angle.

    The three quantities have different units, so each gets its own panel, stacked and sharing
    the layer axis.

    Args:
        shift: the ``residual_shift`` frame (``SHIFT_COLUMNS``: ``layer`` (hidden-state index,
            0 = embeddings), ``mean_shift_rel``, ``cka``, ``cka_debiased``, ``pc1_angle_deg``).
        panels: any of ``shift``, ``cka``, ``angle``, top to bottom.
        fig: an empty figure to draw the panels into; a new figure otherwise.
        ax: with a single panel, the axes to draw it into (instead of ``fig``).

    Returns:
        The figure. Nothing is shown or saved.
    """
    unknown = [p for p in panels if p not in _SHIFT_PANELS]
    if unknown or not panels:
        raise ValueError(f"panels must be some of {list(_SHIFT_PANELS)}, got {list(panels)}")
    if ax is not None and len(panels) != 1:
        raise ValueError("ax= takes a single panel; pass fig= for several")
    rows = shift.sort_values("layer")
    layers = [int(x) for x in rows["layer"]]
    labels = [hidden_layer_label(x, max(layers) + 1) for x in layers]
    if ax is not None:
        fig, axes = ax.figure, [ax]
    else:
        if fig is None:
            fig = new_figure((max(5.0, 2.6 + 0.35 * len(layers)), 0.8 + 1.7 * len(panels)))
        axes = list(np.atleast_1d(fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]))
    for panel, a in zip(panels, axes):
        ylabel, series = _SHIFT_PANELS[panel]
        for column, ls, name in series:
            a.plot(rows["layer"], rows[column], ls=ls, marker="o", markersize=4, lw=1.6, color=PALETTE[0], label=name)
        a.set_ylabel(ylabel, fontsize=9)
        if panel == "cka":
            a.set_ylim(0, 1.05)
            a.legend(loc="lower left", frameon=False, fontsize=8)
        elif panel == "angle":
            a.set_ylim(0, 90)
            a.set_yticks([0, 30, 60, 90])
        else:
            top = float(np.nanmax(rows["mean_shift_rel"])) if rows["mean_shift_rel"].notna().any() else 1.0
            a.set_ylim(-0.04 * max(top, 1e-9), None)  # a zero shift (a frozen layer) stays visible
        a.grid(axis="y", color="0.9", lw=0.6)
    layer_ticks(axes[-1], layers, labels)
    axes[-1].set_xlabel("residual stream after (layer)")
    title = "Residual-stream shift, before → after"
    if len(axes) == 1:
        axes[0].set_title(title)
    else:
        fig.suptitle(title, fontsize=11)
    return fig
