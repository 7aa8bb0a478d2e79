"""Tables derived from runs: accuracy matrix, backward transfer, per-run summary, means over seeds.

Everything here reads the DataFrames of a :class:`~.result.SequenceResult` (pure pandas;
nothing trains or loads models), so tables can be rebuilt from the CSVs of a finished run.

Points of a run, for an *old* task (default the first) and the *new* task (default the last):

- ``after``: the start of the new task, i.e. the model after the task before it;
- ``dip``: the full evaluation within the first ``dip_window`` steps (step > 0) of the new task
  where the old task's primary exact match is lowest;
- ``stop``: the new task's early-stop point (the end when it was never reached);
- ``end``: the new task's last step.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..errors import UsageError
from .result import SequenceResult

__all__ = ["SUMMARY_POINTS", "accuracy_matrix", "backward_transfer", "run_summary", "attribute_table",
           "mean_over_seeds"]

SUMMARY_POINTS: tuple[str, ...] = ("after", "dip", "stop", "end")


def _full_rows(curve: pd.DataFrame) -> pd.DataFrame:
    return curve[curve["full"].astype(bool)]


def _primary_at(curve: pd.DataFrame, task_index: int, step: int) -> pd.Series:
    rows = _full_rows(curve)
    rows = rows[(rows["task_index"] == task_index) & (rows["step"] == step) & rows["primary"].astype(bool)]
    return rows.set_index("eval_task")["exact_match"]


def _point_step(points: pd.DataFrame, task_index: int, point: str) -> int:
    row = points[(points["task_index"] == task_index) & (points["point"] == point)]
    if row.empty:
        raise UsageError(f"no {point!r} point for task index {task_index}")
    return int(row["step"].iloc[0])


def accuracy_matrix(result: SequenceResult, at: str = "end") -> pd.DataFrame:
    """R[after task i, on task j]: the primary exact match of task j after training task i.

    Args:
        result: one run.
        at: ``"end"`` or ``"early_stop"``: which point of each trained task counts as "after".

    Returns:
        Square-ish DataFrame, index ``after`` (task names from ``first_task − 1``, or 0, to the
        last trained), columns the task names. The row of the task before ``first_task`` comes
        from the start evaluation of ``first_task`` (the same model).
    """
    if at not in ("end", "early_stop"):
        raise UsageError(f"at must be 'end' or 'early_stop', got {at!r}")
    trained = sorted(int(i) for i in result.points["task_index"].unique())
    rows: dict[str, pd.Series] = {}
    if result.first_task > 0:
        rows[result.task_names[result.first_task - 1]] = _primary_at(result.curve, result.first_task, 0)
    for index in trained:
        rows[result.task_names[index]] = _primary_at(result.curve, index, _point_step(result.points, index, at))
    matrix = pd.DataFrame(rows).T.reindex(columns=result.task_names)
    matrix.index.name = "after"
    return matrix


def backward_transfer(matrix: pd.DataFrame) -> float:
    """BWT = mean over j < T−1 of R[T−1, j] − R[j, j] (Lopez-Paz & Ranzato, 2017).

    ``matrix`` as from :func:`accuracy_matrix`: rows and columns named by task, the last row
    the final model. Tasks without a diagonal entry are skipped; NaN if none remains.

    >>> R = pd.DataFrame([[0.9, 0.0], [0.2, 0.95]], index=["a", "b"], columns=["a", "b"])
    >>> round(backward_transfer(R), 3)
    -0.7
    """
    last = matrix.index[-1]
    diffs = [matrix.loc[last, task] - matrix.loc[task, task] for task in matrix.index[:-1]
             if task in matrix.columns and pd.notna(matrix.loc[task, task])]
    return float(np.mean(diffs)) if diffs else float("nan")


def run_summary(result: SequenceResult, *, old: int = 0, new: Optional[int] = None,
                dip_window: int = 200) -> pd.DataFrame:
    """One row: the old and new tasks' scores at the ``after``, ``dip``, ``stop`` and ``end`` points.

    Columns: ``method``, ``seed``, ``stop_reached``, ``{point}_step`` for each point, and
    ``{eval_task}_{eval_set}_{point}`` (exact match) for every set of every task evaluated.
    """
    new = len(result.task_names) - 1 if new is None else new
    old_name = result.task_names[old]
    rows = _full_rows(result.curve)
    rows = rows[rows["task_index"] == new]
    if rows.empty:
        raise UsageError(f"task index {new} was not trained in this run")
    old_primary = rows[(rows["eval_task"] == old_name) & rows["primary"].astype(bool)]
    window = old_primary[(old_primary["step"] > 0) & (old_primary["step"] <= dip_window)]
    if window.empty:
        window = old_primary[old_primary["step"] > 0]
    dip_step = int(window.loc[window["exact_match"].idxmin(), "step"]) if not window.empty else 0
    steps = {"after": 0, "dip": dip_step, "stop": _point_step(result.points, new, "early_stop"),
             "end": _point_step(result.points, new, "end")}
    reached = bool(result.points[(result.points["task_index"] == new)
                                 & (result.points["point"] == "early_stop")]["reached"].iloc[0])
    summary: dict[str, object] = {"method": result.method, "seed": result.seed, "stop_reached": reached}
    for point, step in steps.items():
        summary[f"{point}_step"] = step
    for point, step in steps.items():
        at = rows[rows["step"] == step]
        for _, row in at.iterrows():
            summary[f"{row['eval_task']}_{row['eval_set']}_{point}"] = float(row["exact_match"])
    return pd.DataFrame([summary])


def attribute_table(result: SequenceResult, *, task_index: Optional[int] = None, point: str = "end") -> pd.DataFrame:
    """Per-attribute exact match at one point of one trained task (default the last).

    Returns one row per evaluation set × attribute: ``method``, ``seed``, ``point``, ``step``,
    ``eval_task``, ``eval_set``, ``attribute``, ``n``, ``exact_match``, ``first_token_acc``.
    """
    task_index = int(result.points["task_index"].max()) if task_index is None else task_index
    step = _point_step(result.points, task_index, point)
    rows = result.per_attribute
    rows = rows[(rows["task_index"] == task_index) & (rows["step"] == step)]
    table = rows[["method", "seed", "eval_task", "eval_set", "attribute", "n", "exact_match", "first_token_acc"]]
    return table.assign(point=point, step=step)[["method", "seed", "point", "step", "eval_task", "eval_set",
                                                  "attribute", "n", "exact_match", "first_token_acc"]]


def mean_over_seeds(summaries: pd.DataFrame, by: Union[str, Sequence[str]] = "method") -> pd.DataFrame:
    """Mean, standard deviation (ddof 1) and count over seeds of every numeric summary column.

    Returns one row per ``by`` group with columns ``<col>_mean``, ``<col>_std`` and ``n_seeds``;
    boolean columns (``stop_reached``) become the fraction of seeds where they hold.
    """
    by = [by] if isinstance(by, str) else list(by)
    numeric = [c for c in summaries.columns if c not in by and c != "seed"
               and (pd.api.types.is_numeric_dtype(summaries[c]) or pd.api.types.is_bool_dtype(summaries[c]))]
    data = summaries[by + numeric].copy()
    data[numeric] = data[numeric].astype(float)
    grouped = data.groupby(by, sort=False)
    mean = grouped[numeric].mean().add_suffix("_mean")
    std = grouped[numeric].std(ddof=1).add_suffix("_std")
    out = pd.concat([mean, std], axis=1)
    out["n_seeds"] = grouped.size()
    return out.reset_index()
