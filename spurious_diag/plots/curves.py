"""The collapse curve: the old task's accuracy while the new task trains, one line per method."""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ._style import PALETTE, method_order, method_styles, new_axes, task_label

__all__ = ["collapse_curve", "METRIC_LABELS"]

METRIC_LABELS = {
    "exact_match": "exact match (fraction)",
    "first_token_acc": "first-token accuracy (fraction)",
    "first_token_prob": "first-token probability",
}

_DASHES = ["-", "--", "-.", ":"]  # with the colors, so lines stay apart in greyscale print


def _old_task_rows(frame: pd.DataFrame, old_task: Optional[str], eval_set: Optional[str],
                   task_index: Optional[int]) -> tuple[pd.DataFrame, str, str, str]:
    """Full evaluations of one old task's set during one trained task; and the names used."""
    rows = frame
    if "full" in rows.columns:
        rows = rows[rows["full"].astype(bool)]
    if task_index is None:
        task_index = int(rows["task_index"].max())
    rows = rows[rows["task_index"] == task_index]
    if rows.empty:
        raise ValueError(f"no full evaluations during task index {task_index}")
    trained = str(rows["task"].iloc[0])
    if old_task is None:
        others = sorted(set(rows["eval_task"].astype(str)) - {trained})
        if not others:
            raise ValueError(f"no task other than the trained one ({trained!r}) is evaluated")
        old_task = others[0]
    rows = rows[rows["eval_task"] == old_task]
    if rows.empty:
        raise ValueError(f"no evaluations of {old_task!r}")
    if eval_set is None:
        sets = sorted(set(rows["eval_set"].astype(str)))
        primary = sorted(set(rows.loc[rows["primary"].astype(bool), "eval_set"])) if "primary" in rows.columns else []
        eval_set = primary[0] if primary else ("test" if "test" in sets else sets[0])
    rows = rows[rows["eval_set"] == eval_set]
    if rows.empty:
        raise ValueError(f"no evaluations of {old_task!r} on set {eval_set!r}")
    return rows, trained, old_task, eval_set


def _mean_band(per_seed: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and standard deviation over seeds at the steps every seed evaluated.

    Early-stop evaluations happen at a different step in each seed; averaging them with fewer
    seeds would make the mean jump, so they are left out of the line (the markers show them).
    """
    n_seeds = per_seed["seed"].nunique()
    stats = per_seed.groupby("step")[metric].agg(["mean", "std", "count"])
    return stats[stats["count"] == n_seeds].reset_index()


def collapse_curve(
    curve: pd.DataFrame,
    *,
    points: Optional[pd.DataFrame] = None,
    methods: Optional[Sequence[str]] = None,
    by: str = "method",
    attribute: Optional[str] = None,
    old_task: Optional[str] = None,
    eval_set: Optional[str] = None,
    task_index: Optional[int] = None,
    window: Optional[int] = 150,
    metric: str = "exact_match",
    ax: Optional[Axes] = None,
) -> Figure:
    """The old task's accuracy at each step of the new task: the collapse and what each method keeps.

    One line per method (mean over seeds, with a ±1 s.d. band when there are several), the first
    ``window`` steps shaded (the paper's collapse happens within ~150 steps), and, with ``points``,
    each seed's early-stop point as a marker (only where the new task reached its target).

    Args:
        curve: a :attr:`SequenceResult.curve <spurious_diag.continual.result.SequenceResult>` frame
            (``CURVE_COLUMNS``: ``method``, ``seed``, ``task_index``, ``task``, ``step``, ``full``,
            ``eval_task``, ``eval_set``, ``primary``, ``exact_match``, ...) of one or more runs,
            or a ``per_attribute`` frame (``ATTRIBUTE_COLUMNS``: adds ``attribute``, no ``full``
            or ``primary``) for per-attribute curves.
        points: the runs' ``points`` frame (``POINT_COLUMNS``: ``method``, ``seed``,
            ``task_index``, ``point``, ``step``, ``reached``), to mark early stops.
        methods: which methods, in legend order (default all, SEQ first, Freeze(k) by k).
        by: ``"method"`` (one line per method) or ``"attribute"`` (one line per attribute of a
            single method, from a ``per_attribute`` frame; ``methods`` picks it, default SEQ).
        attribute: with a ``per_attribute`` frame and ``by="method"``, the attribute shown
            (default the mean over attributes).
        old_task: the evaluated task (default the first one that is not being trained).
        eval_set: its set (default its primary set; ``test`` for a ``per_attribute`` frame).
        task_index: the trained task (default the last one in the frame).
        window: shade steps [0, window]; None for no shading.
        metric: ``exact_match`` (default), ``first_token_acc`` (or ``first_token_prob`` of a
            ``per_attribute`` frame).
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    if by not in ("method", "attribute"):
        raise ValueError(f"by must be 'method' or 'attribute', got {by!r}")
    rows, trained, old_task, eval_set = _old_task_rows(curve, old_task, eval_set, task_index)
    has_attributes = "attribute" in rows.columns
    if by == "attribute" and not has_attributes:
        raise ValueError("by='attribute' needs a per_attribute frame (with an 'attribute' column)")
    if attribute is not None:
        if not has_attributes:
            raise ValueError("attribute= needs a per_attribute frame (with an 'attribute' column)")
        rows = rows[rows["attribute"] == attribute]
        if rows.empty:
            raise ValueError(f"no rows for attribute {attribute!r}")
    present = method_order(rows["method"])
    chosen = [str(m) for m in methods] if methods is not None else present
    missing = [m for m in chosen if m not in present]
    if missing:
        raise ValueError(f"methods {missing} not in the frame (it has {present})")
    if by == "attribute":
        method = chosen[0] if methods is not None else ("SEQ" if "SEQ" in present else present[0])
        rows = rows[rows["method"] == method]
        groups = sorted(set(rows["attribute"].astype(str)))
        styles = {a: {"color": PALETTE[i % len(PALETTE)], "ls": _DASHES[i % len(_DASHES)], "lw": 1.5}
                  for i, a in enumerate(groups)}
        rows = rows.assign(group=rows["attribute"].astype(str))
    else:
        rows = rows[rows["method"].isin(chosen)]
        groups, styles = chosen, method_styles(chosen)
        rows = rows.assign(group=rows["method"].astype(str))
    # one value per (group, seed, step): an unselected per_attribute frame is averaged over attributes
    per_seed = rows.groupby(["group", "method", "seed", "step"], as_index=False)[metric].mean()
    n_seeds = int(per_seed.groupby("group")["seed"].nunique().max())

    fig, ax = new_axes(ax, (6.4, 3.6))
    if window:
        ax.axvspan(0, window, color="0.92", zorder=0, lw=0, label=f"first {window} steps")
    for group in groups:
        stats = _mean_band(per_seed[per_seed["group"] == group], metric)
        style = styles[group]
        ax.plot(stats["step"], stats["mean"], label=group, zorder=2, **style)
        if n_seeds > 1:
            spread = stats["std"].fillna(0)
            ax.fill_between(stats["step"], stats["mean"] - spread, stats["mean"] + spread, color=style["color"],
                            alpha=0.15, lw=0, zorder=1)
    stops = None
    if points is not None:
        stops = points[(points["point"] == "early_stop") & points["reached"].astype(bool)
                       & (points["task_index"] == rows["task_index"].iloc[0])]
        stops = stops[["method", "seed", "step"]].merge(per_seed, on=["method", "seed", "step"])
        for group, at in stops.groupby("group", sort=False):
            ax.scatter(at["step"], at[metric], marker="v", s=36, color=styles[group]["color"], edgecolor="black",
                       linewidth=0.6, zorder=3)
    handles, labels = ax.get_legend_handles_labels()
    if stops is not None and not stops.empty:
        handles.append(Line2D([], [], ls="", marker="v", markersize=6, color="0.6", markeredgecolor="black"))
        labels.append("early stop (per seed)")
    ax.set_xlim(0, 1.02 * per_seed["step"].max())  # room for a marker at the last step
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"{task_label(trained)} step")
    ax.set_ylabel(f"{task_label(old_task)} ({eval_set}) {METRIC_LABELS.get(metric, metric)}")
    band = f"mean ± s.d., {n_seeds} seeds" if n_seeds > 1 else "1 seed"
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False,
              title=f"{by} ({band})", title_fontsize=9, fontsize=9)
    title = f"{task_label(old_task)} accuracy during {task_label(trained)}"
    if by == "attribute":
        title += f": {rows['method'].iloc[0]}"
    elif attribute is not None:
        title += f": {attribute}"
    ax.set_title(title)
    return fig
