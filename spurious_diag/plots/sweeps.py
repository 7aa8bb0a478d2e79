"""The freeze-depth sweep: old and new task accuracy against the number of frozen blocks k."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._style import PALETTE, freeze_k, new_axes, task_label

__all__ = ["freeze_sweep", "sweep_table", "POINT_LABELS"]

POINT_LABELS = {"after": "start", "dip": "dip", "stop": "early stop", "end": "end"}
_POINT_COLORS = {"after": PALETTE[7], "dip": PALETTE[3], "stop": PALETTE[0], "end": PALETTE[2]}


def _set_label(column: str) -> str:
    """``task0_test`` → ``Task 0 (test)``."""
    task, _, split = column.rpartition("_")
    return f"{task_label(task)} ({split})" if task else column


def sweep_table(summary: pd.DataFrame, sets: Sequence[str], points: Sequence[str]) -> pd.DataFrame:
    """Tidy means over seeds: one row per (method, set, point) with ``mean``, ``std`` and ``k``.

    Args:
        summary: per-run summaries (:func:`~spurious_diag.continual.tables.run_summary` rows, one per
            method × seed: columns ``method``, ``seed``, ``{eval_task}_{eval_set}_{point}``) or
            their means (:func:`~spurious_diag.continual.tables.mean_over_seeds`: ``method``,
            ``{...}_{point}_mean``, ``{...}_{point}_std``, ``n_seeds``), e.g. the Biography
            benchmark's ``runs.csv`` or ``methods.csv``.
        sets: ``{eval_task}_{eval_set}`` names, e.g. ``task0_test``.
        points: ``after``, ``dip``, ``stop``, ``end``.

    Returns:
        Columns ``method``, ``k`` (None unless Freeze(k)), ``set``, ``point``, ``mean``, ``std``
        (NaN for one seed), ``stop_reached`` (the share of seeds whose new task reached its
        early-stop target; NaN when the summary does not say).
    """
    rows = []
    means = "seed" not in summary.columns
    reached_column = "stop_reached_mean" if means else "stop_reached"
    if reached_column in summary.columns:
        reached = summary.groupby("method", sort=False)[reached_column].apply(lambda c: c.astype(float).mean())
    else:
        reached = pd.Series(dtype=float)
    for s in sets:
        for p in points:
            column = f"{s}_{p}"
            if means:
                if f"{column}_mean" not in summary.columns:
                    raise ValueError(f"no column {column}_mean in the summary")
                mean = summary[f"{column}_mean"]
                std = summary[f"{column}_std"] if f"{column}_std" in summary.columns else math.nan
                part = pd.DataFrame({"method": summary["method"], "mean": mean, "std": std})
            else:
                if column not in summary.columns:
                    raise ValueError(f"no column {column} in the summary")
                part = summary.groupby("method", sort=False)[column].agg(["mean", "std"]).reset_index()
            rows.append(part.assign(set=s, point=p))
    table = pd.concat(rows, ignore_index=True)
    table["k"] = [freeze_k(m) for m in table["method"]]
    table["stop_reached"] = table["method"].map(reached).astype(float)
    return table[["method", "k", "set", "point", "mean", "std", "stop_reached"]]


def freeze_sweep(
    summary: pd.DataFrame,
    *,
    points: Sequence[str] = ("dip", "stop", "end"),
    old: str = "task0_test",
    new: str = "task1_train",
    reference: Optional[str] = "SEQ",
    ax: Optional[Axes] = None,
) -> Figure:
    """Old- and new-task exact match of Freeze(k) against k, at each point, with SEQ as reference lines.

    Freezing slows forgetting and learning both, so the new task is drawn next to the old one:
    a k that keeps the old task but stops the new one from learning is no answer. Colors are
    the points (``dip``: the old task's lowest full evaluation early in the new task, per run;
    ``stop``: the new task's early stop; ``end``), line styles the tasks; error bars are ±1
    s.d. over seeds. SEQ (``reference``) is drawn as horizontal dotted (old) and dash-dotted
    (new) lines in the point's color. An early-stop point of a k whose new task never reached
    its target (in some seed) is the end of that run, not an early stop: it is crossed out (×).

    Args:
        summary: per-run summaries or their means over seeds; see :func:`sweep_table`. Methods
            other than Freeze(k) and ``reference`` are ignored.
        points: which points to draw.
        old, new: the ``{eval_task}_{eval_set}`` of the old and the new task.
        reference: the method drawn as horizontal lines; None for none.
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    unknown = [p for p in points if p not in POINT_LABELS]
    if unknown:
        raise ValueError(f"unknown points {unknown}; expected some of {list(POINT_LABELS)}")
    table = sweep_table(summary, [old, new], points)
    sweep = table[table["k"].notna()].sort_values("k")
    if sweep.empty:
        raise ValueError("no Freeze(k) methods in the summary")
    ref = table[table["method"] == reference] if reference is not None else table.iloc[:0]
    ks = sorted(int(k) for k in sweep["k"].unique())
    fig, ax = new_axes(ax, (6.4, 3.6))
    task_styles = {old: {"ls": "-", "marker": "o", "ref_ls": ":"}, new: {"ls": "--", "marker": "s", "ref_ls": "-."}}
    for p in points:
        color = _POINT_COLORS[p]
        for s, style in task_styles.items():
            line = sweep[(sweep["set"] == s) & (sweep["point"] == p)]
            ax.errorbar(line["k"].to_numpy(int), line["mean"].to_numpy(float),
                        yerr=line["std"].fillna(0).to_numpy(float), color=color, ls=style["ls"],
                        marker=style["marker"], markersize=5, capsize=3, lw=1.5, gid="sweep")
            if p == "stop":
                missed = line[line["stop_reached"] < 1]
                if len(missed):
                    ax.scatter(missed["k"].to_numpy(int), missed["mean"].to_numpy(float), marker="x", s=70,
                               color="black", linewidths=1.5, zorder=5, gid="stop_not_reached")
            value = ref[(ref["set"] == s) & (ref["point"] == p)]["mean"]
            if len(value) and pd.notna(value.iloc[0]):
                ax.axhline(float(value.iloc[0]), color=color, ls=style["ref_ls"], lw=1.1, alpha=0.8, gid="reference")
    handles = [Line2D([], [], color=_POINT_COLORS[p], lw=6, alpha=0.8) for p in points]
    labels = [POINT_LABELS[p] for p in points]
    handles += [Line2D([], [], color="0.25", ls="-", marker="o", markersize=5),
                Line2D([], [], color="0.25", ls="--", marker="s", markersize=5)]
    labels += [f"{_set_label(old)}, Freeze(k)", f"{_set_label(new)}, Freeze(k)"]
    if "stop" in points and (sweep[sweep["point"] == "stop"]["stop_reached"] < 1).any():
        handles.append(Line2D([], [], color="black", ls="", marker="x", markersize=7))
        labels.append("early stop never reached\n(scored at its end)")
    if not ref.empty:
        handles += [Line2D([], [], color="0.25", ls=":", lw=1.1), Line2D([], [], color="0.25", ls="-.", lw=1.1)]
        labels += [f"{_set_label(old)}, {reference}", f"{_set_label(new)}, {reference}"]
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False,
              fontsize=9)
    ax.set_xticks(ks)
    ax.set_xlim(ks[0] - 0.3, ks[-1] + 0.3)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("blocks frozen, k (Freeze(k); embeddings always frozen)")
    ax.set_ylabel("exact match (fraction)")
    ax.set_title("Freeze depth sweep")
    return fig
