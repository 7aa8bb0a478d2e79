"""The numbers of one run of a comparison, from its tables (pure pandas: nothing trains or loads).

For a run of the new tasks 1..N after Task 0 (``curve`` and ``points`` as in
:class:`~spurious_diag.continual.result.SequenceResult`), the points are

- ``after``: the start of Task 1 (the model after Task 0);
- ``dip``: the full evaluation within Task 1's first ``dip_window`` steps (step > 0) where Task 0
  is lowest;
- ``stop``: the *last* task's early-stop point (the first evaluation where it reaches the
  target; its end when it never does). Every earlier new task ended at its own early-stop point;
- ``end``: the last task's last step.

``task0_*`` is Task 0's primary (held-out ``test``) exact match and ``task0_val_*`` its validation
people's; ``task1_*`` is the *last* new task's primary exact match (Task 1 when N = 1), as the
paper reports the newest task. ``avg_acc`` and ``bwt`` come from the accuracy matrix at the
early-stop points (the row of the last task: every task's accuracy when training ends there).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..continual.result import SequenceResult
from ..continual.tables import accuracy_matrix, backward_transfer

__all__ = ["run_row", "run_matrix", "task_vector_row", "ROW_COLUMNS"]

ROW_COLUMNS = ["task0_after", "task0_dip", "task0_stop", "task0_end", "task1_stop", "task1_end", "stop_step",
               "avg_acc", "bwt", "task0_val_stop", "dip_step", "stop_reached"]


def _as_result(curve: pd.DataFrame, points: pd.DataFrame) -> SequenceResult:
    names = list(dict.fromkeys(curve.sort_values("task_index")["eval_task"]))
    curve = curve.assign(full=curve["full"].astype(bool), primary=curve["primary"].astype(bool))
    return SequenceResult(str(curve["method"].iloc[0]), int(curve["seed"].iloc[0]), names,
                          int(points["task_index"].min()), curve, pd.DataFrame(), points, pd.DataFrame())


def _score(full: pd.DataFrame, task_index: int, step: int, eval_task: str, eval_set: str) -> float:
    rows = full[(full["task_index"] == task_index) & (full["step"] == step) & (full["eval_task"] == eval_task)
                & (full["eval_set"] == eval_set)]
    return float(rows["exact_match"].iloc[0]) if not rows.empty else math.nan


def run_matrix(curve: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """The run's accuracy matrix at the early-stop points (:func:`~spurious_diag.continual.tables.accuracy_matrix`)."""
    return accuracy_matrix(_as_result(curve, points), at="early_stop")


def run_row(curve: pd.DataFrame, points: pd.DataFrame, *, dip_window: int) -> dict[str, Any]:
    """One run's numbers (:data:`ROW_COLUMNS`; module docstring for the points).

    Args:
        curve, points: the run's tables (tasks 1..N trained, Task 0 named ``task0`` with sets
            ``test`` (primary) and ``val``).
        dip_window: Task 1 steps in which the dip is looked for.
    """
    full = curve[curve["full"].astype(bool)]
    last = int(points["task_index"].max())
    first = int(points["task_index"].min())
    last_name = str(points.loc[points["task_index"] == last, "task"].iloc[0])
    at = points[points["task_index"] == last].set_index("point")
    stop, end = int(at.loc["early_stop", "step"]), int(at.loc["end", "step"])
    window = full[(full["task_index"] == first) & (full["eval_task"] == "task0") & (full["eval_set"] == "test")
                  & (full["step"] > 0) & (full["step"] <= dip_window)]
    dip_step = int(window.loc[window["exact_match"].idxmin(), "step"]) if not window.empty else 0
    matrix = run_matrix(curve, points)
    primary = {name: s for name, s in full[full["primary"].astype(bool)][["eval_task", "eval_set"]]
               .drop_duplicates().itertuples(index=False)}
    return {
        "task0_after": _score(full, first, 0, "task0", "test"),
        "task0_dip": _score(full, first, dip_step, "task0", "test") if dip_step else math.nan,
        "task0_stop": _score(full, last, stop, "task0", "test"),
        "task0_end": _score(full, last, end, "task0", "test"),
        "task1_stop": _score(full, last, stop, last_name, primary[last_name]),
        "task1_end": _score(full, last, end, last_name, primary[last_name]),
        "stop_step": stop,
        "avg_acc": float(matrix.iloc[-1].mean()),
        "bwt": backward_transfer(matrix),
        "task0_val_stop": _score(full, last, stop, "task0", "val"),
        "dip_step": dip_step,
        "stop_reached": bool(at.loc["early_stop", "reached"]),
    }


def task_vector_row(seq_row: dict[str, Any], seq_matrix: pd.DataFrame, stop_scores: pd.Series,
                    end_scores: pd.Series) -> tuple[dict[str, Any], pd.DataFrame]:
    """The numbers of a Task Vector edit of a SEQ run, and its accuracy matrix.

    Args:
        seq_row, seq_matrix: the SEQ run's :func:`run_row` and :func:`run_matrix`.
        stop_scores, end_scores: the edit with θ_e at the last task's early-stop point and at its
            end: exact match per ``<task>/<set>`` (a row of the Task Vector job's scores).

    Returns:
        (the row: ``after`` from SEQ, no dip (the edit is not a training run), ``stop``/``end``
        from the edits; the matrix: SEQ's, with the last row replaced by the stop edit's scores).
    """
    last_name = str(seq_matrix.columns[-1])

    def score(scores: pd.Series, task: str) -> float:
        columns = [c for c in scores.index if str(c).startswith(f"{task}/")]
        wanted = f"{task}/test" if f"{task}/test" in columns else columns[0]
        return float(scores[wanted])

    matrix = seq_matrix.copy()
    matrix.iloc[-1] = [score(stop_scores, str(task)) for task in matrix.columns]
    row = {**seq_row, "task0_dip": math.nan, "dip_step": 0,
           "task0_stop": score(stop_scores, "task0"), "task0_end": score(end_scores, "task0"),
           "task1_stop": score(stop_scores, last_name), "task1_end": score(end_scores, last_name),
           "task0_val_stop": float(stop_scores["task0/val"]),
           "avg_acc": float(matrix.iloc[-1].mean()), "bwt": backward_transfer(matrix)}
    return row, matrix
