"""The accuracy matrix R[after task i, on task j] as an annotated heatmap."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._style import SEQUENTIAL_CMAP, new_axes, task_label

__all__ = ["accuracy_matrix_plot", "matrix_from_long"]


def _only(frame: pd.DataFrame, column: str, value: Optional[str]) -> pd.DataFrame:
    if column not in frame.columns:
        return frame
    if value is None:
        values = list(dict.fromkeys(frame[column].astype(str)))
        if len(values) > 1:
            raise ValueError(f"the frame holds several {column} values {values}; pick one with {column}=")
        return frame
    out = frame[frame[column].astype(str) == str(value)]
    if out.empty:
        raise ValueError(f"no rows with {column} = {value!r}")
    return out


def matrix_from_long(long: pd.DataFrame, *, method: Optional[str] = None, at: Optional[str] = None) -> tuple[
        pd.DataFrame, int]:
    """Wide R (mean over seeds) and the number of seeds, from a long frame (``after``, ``task``,
    ``exact_match``, optionally ``method``, ``seed``, ``at``) like the Biography benchmark's
    ``accuracy_matrix.csv``. Tasks keep their order of first appearance."""
    rows = _only(_only(long, "method", method), "at", at)
    n_seeds = int(rows["seed"].nunique()) if "seed" in rows.columns else 1
    after = list(dict.fromkeys(rows["after"]))
    tasks = list(dict.fromkeys(rows["task"]))
    grid = rows.pivot_table(index="after", columns="task", values="exact_match", aggfunc="mean")
    grid = grid.reindex(index=after, columns=tasks)
    return grid, n_seeds


def accuracy_matrix_plot(R: pd.DataFrame, *, method: Optional[str] = None, at: Optional[str] = None,
                         ax: Optional[Axes] = None) -> Figure:
    """Heatmap of R[after task i, on task j] (exact match), each cell annotated with its value.

    Rows are the models after each trained task (first at the top, as the matrix is written);
    the diagonal is each task just learned, below it the old tasks it forgot.

    Args:
        R: :func:`~spurious_diag.continual.tables.accuracy_matrix` output (index ``after``, one column
            per task), or the long form (``after``, ``task``, ``exact_match`` and optionally
            ``method``, ``seed``, ``at``), averaged over seeds.
        method, at: with a long frame holding several methods or points (``end`` /
            ``early_stop``), the one to draw.
        ax: axes to draw into; a new figure otherwise.

    Returns:
        The figure. Nothing is shown or saved.
    """
    n_seeds = 1
    if {"after", "task", "exact_match"} <= set(R.columns):
        grid, n_seeds = matrix_from_long(R, method=method, at=at)
        method = method if method is not None or "method" not in R.columns else str(R["method"].iloc[0])
        at = at if at is not None or "at" not in R.columns else str(R["at"].iloc[0])
    else:
        grid = R.astype(float)
    if grid.empty:
        raise ValueError("empty accuracy matrix")
    n_rows, n_cols = grid.shape
    fig, ax = new_axes(ax, (max(3.8, 1.9 + 1.0 * n_cols), max(2.8, 1.2 + 0.8 * n_rows)))
    sns.heatmap(grid, ax=ax, cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=1.0, annot=True, fmt=".2f", mask=grid.isna(),
                annot_kws={"fontsize": 10}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": "exact match (fraction)"})
    ax.set_xticks(np.arange(n_cols) + 0.5, [task_label(t) for t in grid.columns], rotation=0)
    ax.set_yticks(np.arange(n_rows) + 0.5, [task_label(t) for t in grid.index], rotation=0)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("after training on")
    title = "Accuracy matrix"
    if method is not None:
        title += f": {method}"
    if at is not None:
        title += f" ({'early stop' if at == 'early_stop' else at})"
    ax.set_title(title + (f"\nmean of {n_seeds} seeds" if n_seeds > 1 else ""), fontsize=10)
    return fig
