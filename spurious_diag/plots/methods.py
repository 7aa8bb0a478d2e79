"""Figures of a method comparison (``spurious-diag compare``): the old-vs-new-task trade-off and
Task Vector's α curve."""

from __future__ import annotations

from typing import Optional

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._style import PALETTE, legend_outside, new_axes

__all__ = ["tradeoff_plot", "alpha_curve_plot"]

_FAMILY_ORDER = ("SEQ", "Freeze", "REPLAY", "MIX", "EWC", "GP", "LAMOL", "TaskVector")
_MARKERS = {"SEQ": "o", "Freeze": "s", "REPLAY": "^", "MIX": "v", "EWC": "D", "GP": "P", "LAMOL": "X",
            "TaskVector": "h"}


def _colors(families: list[str]) -> dict[str, tuple[float, float, float]]:
    ordered = [f for f in _FAMILY_ORDER if f in families] + [f for f in families if f not in _FAMILY_ORDER]
    colors = {f: PALETTE[(i + 1) % len(PALETTE)] for i, f in enumerate(ordered)}
    if "SEQ" in colors:
        colors["SEQ"] = (0.0, 0.0, 0.0)
    return colors


def tradeoff_plot(table: pd.DataFrame, *, x: str = "task1_stop", y: str = "task0_stop",
                  bound: Optional[float] = None, ax: Optional[Axes] = None) -> Figure:
    """Old task against new task, one point per method × setting (mean ± s.d. over seeds when the
    table has several seeds of it), the chosen settings marked with a star and labelled.

    Args:
        table: ``methods.csv`` (one row per method × seed at the chosen settings) or
            ``candidates.csv`` (every setting tried, ``chosen`` marked): columns ``method``,
            ``setting``, ``x`` and ``y`` (fractions), optionally ``seed`` and ``chosen``.
        x, y: the columns to plot (e.g. ``task1_stop`` and ``task0_val_stop`` for the choice).
        bound: a vertical dashed line at this ``x`` (fraction): the eligibility bound of the choice.
        ax: draw into this axes (default: a new figure).

    Returns:
        The figure (not shown, not saved).
    """
    fig, ax = new_axes(ax, (7.0, 4.8))
    table = table.assign(setting=table["setting"].fillna("").astype(str))
    if "chosen" not in table:
        table = table.assign(chosen=True)
    colors = _colors(list(dict.fromkeys(table["method"])))
    for (family, setting), group in table.groupby(["method", "setting"], sort=False):
        chosen = bool(group["chosen"].astype(bool).any())
        mx, my = float(group[x].mean()) * 100, float(group[y].mean()) * 100
        sx = float(group[x].std(ddof=1)) * 100 if len(group) > 1 else 0.0
        sy = float(group[y].std(ddof=1)) * 100 if len(group) > 1 else 0.0
        style = dict(color=colors[family], alpha=1.0 if chosen else 0.35, zorder=3 if chosen else 2)
        if sx or sy:
            ax.errorbar(mx, my, xerr=sx, yerr=sy, fmt="none", elinewidth=1, capsize=2, **style)
        ax.scatter(mx, my, marker="*" if chosen else _MARKERS.get(family, "o"), s=160 if chosen else 30,
                   edgecolors="black" if chosen else "none", linewidths=0.6, **style)
        if chosen:  # a compound setting (Task Vector's k and α) is in the tables, not on the figure
            label = family if not setting or "," in setting else f"{family}({setting})"
            ax.annotate(label, (mx, my), xytext=(5, 4), textcoords="offset points", fontsize=8)
    if bound is not None:
        ax.axvline(bound * 100, color="grey", linestyle="--", linewidth=1, zorder=1)
    ax.set_xlabel(f"{_axis_label(x)} (%)")
    ax.set_ylabel(f"{_axis_label(y)} (%)")
    handles = [Line2D([], [], linestyle="none", marker=_MARKERS.get(f, "o"), color=c, label=f)
               for f, c in colors.items()]
    handles.append(Line2D([], [], linestyle="none", marker="*", markersize=12, color="grey",
                          markeredgecolor="black", label="chosen setting"))
    if bound is not None:
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=1, label="eligibility bound"))
    legend_outside(ax, handles=handles)
    ax.grid(alpha=0.3)
    return fig


def _axis_label(column: str) -> str:
    names = {"task0_stop": "Task 0 at early stop", "task0_val_stop": "Task 0 validation at early stop",
             "task1_stop": "newest task at early stop", "task0_end": "Task 0 at the end",
             "task1_end": "newest task at the end", "task0_dip": "Task 0 at the dip"}
    return names.get(column, column)


def alpha_curve_plot(curve: pd.DataFrame, *, ax: Optional[Axes] = None) -> Figure:
    """Task Vector: old and new task against α at the chosen θ_k (mean ± s.d. over seeds).

    Args:
        curve: ``task_vector_alpha.csv``: ``seed``, ``alpha``, ``task0_test``, ``task0_val``,
            ``last_task`` (fractions).
        ax: draw into this axes (default: a new figure).
    """
    fig, ax = new_axes(ax, (6.0, 4.0))
    stats = curve.groupby("alpha")[["task0_test", "task0_val", "last_task"]].agg(["mean", "std"]).fillna(0.0)
    for column, label, color in (("task0_test", "Task 0 (held out)", PALETTE[0]),
                                 ("task0_val", "Task 0 (validation)", PALETTE[9]),
                                 ("last_task", "newest task", PALETTE[3])):
        mean, std = stats[(column, "mean")] * 100, stats[(column, "std")] * 100
        ax.plot(stats.index, mean, marker="o", color=color, label=label)
        ax.fill_between(stats.index, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("α  (θ = θ_k − α·(θ_e − θ_start))")
    ax.set_ylabel("exact match (%)")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    return fig
