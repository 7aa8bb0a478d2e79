"""A run's numbers from its tables, Task Vector's row, means over seeds and the claim: against hand computation."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from spurious_diag.comparison.rows import run_row, task_vector_row
from spurious_diag.comparison.summary import claim, method_means

SETS = [("task0", "test", True), ("task0", "val", False), ("task1", "train", True), ("task2", "train", True)]


def _curve(evals):
    """evals: {(task_index, step): (task0 test, task0 val, task1, task2)} → curve rows (all full)."""
    rows = []
    for (index, step), scores in evals.items():
        for (task, split, primary), score in zip(SETS, scores):
            rows.append({"method": "SEQ", "seed": 0, "task_index": index, "task": f"task{index}", "step": step,
                         "global_step": step, "full": True, "eval_task": task, "eval_set": split,
                         "primary": primary, "exact_match": score, "first_token_acc": score})
    return pd.DataFrame(rows)


def _points(stops):
    rows = []
    for index, (stop, end, reached) in stops.items():
        for point, step, hit in (("start", 0, True), ("early_stop", stop, reached), ("end", end, True)):
            rows.append({"method": "SEQ", "seed": 0, "task_index": index, "task": f"task{index}", "point": point,
                         "step": step, "global_step": step, "reached": hit})
    return pd.DataFrame(rows)


# Task 1 ends at its early stop (step 20); Task 2 stops at 20 and trains on to 40.
CURVE = _curve({
    (1, 0): (0.80, 0.70, 0.00, 0.00), (1, 10): (0.30, 0.20, 0.50, 0.00), (1, 20): (0.40, 0.35, 0.95, 0.00),
    (2, 0): (0.40, 0.35, 0.95, 0.00), (2, 10): (0.20, 0.10, 0.70, 0.60), (2, 20): (0.25, 0.15, 0.60, 0.92),
    (2, 40): (0.10, 0.05, 0.50, 1.00),
})
POINTS = _points({1: (20, 20, True), 2: (20, 40, True)})


def test_run_row_by_hand():
    row = run_row(CURVE, POINTS, dip_window=15)
    assert row["task0_after"] == 0.80 and row["task0_dip"] == 0.30 and row["dip_step"] == 10
    assert (row["task0_stop"], row["task0_end"], row["task1_stop"], row["task1_end"]) == (0.25, 0.10, 0.92, 1.00)
    assert row["task0_val_stop"] == 0.15 and row["stop_step"] == 20 and row["stop_reached"]
    # last row at early stop: task0 0.25, task1 0.60, task2 0.92
    assert row["avg_acc"] == pytest.approx((0.25 + 0.60 + 0.92) / 3)
    # BWT: task0 0.25 − 0.80 (its diagonal: the start of Task 1), task1 0.60 − 0.95
    assert row["bwt"] == pytest.approx(((0.25 - 0.80) + (0.60 - 0.95)) / 2)


def test_task_vector_row_replaces_the_last_row_and_has_no_dip():
    from spurious_diag.comparison.rows import run_matrix

    seq = run_row(CURVE, POINTS, dip_window=15)
    stop = pd.Series({"task0/test": 0.5, "task0/val": 0.45, "task1/train": 0.7, "task2/train": 0.85})
    end = pd.Series({"task0/test": 0.3, "task0/val": 0.2, "task1/train": 0.6, "task2/train": 0.9})
    row, matrix = task_vector_row(seq, run_matrix(CURVE, POINTS), stop, end)
    assert math.isnan(row["task0_dip"]) and row["task0_after"] == 0.80
    assert (row["task0_stop"], row["task1_stop"], row["task0_end"], row["task1_end"]) == (0.5, 0.85, 0.3, 0.9)
    assert row["task0_val_stop"] == 0.45
    assert list(matrix.iloc[-1]) == [0.5, 0.7, 0.85]
    assert row["bwt"] == pytest.approx(((0.5 - 0.80) + (0.7 - 0.95)) / 2)


def _means(values):
    rows = [{"method": m, "setting": "", "seed": s, "task0_stop": t0, "task1_stop": t1}
            for m, runs in values.items() for s, (t0, t1) in enumerate(runs)]
    return method_means(pd.DataFrame(rows))


def test_means_and_sample_std_over_seeds():
    means = _means({"SEQ": [(0.1, 0.9), (0.3, 0.94)]})
    assert means.loc[0, "task0_stop_mean"] == pytest.approx(0.2)
    assert means.loc[0, "task0_stop_std"] == pytest.approx(math.sqrt(0.02))
    assert means.loc[0, "seeds"] == 2


def test_claim_holds_only_when_freeze_wins_among_the_eligible():
    means = _means({"SEQ": [(0.10, 0.92)], "Freeze": [(0.40, 0.90)], "EWC": [(0.60, 0.50)], "GP": [(0.30, 0.85)]})
    verdict = claim(means, 0.10)
    assert verdict["holds"] and verdict["best"] == "Freeze" and set(verdict["excluded"]) == {"EWC"}
    assert verdict["margin"] == pytest.approx(0.10) and verdict["bound"] == pytest.approx(0.82)
    beaten = _means({"SEQ": [(0.10, 0.92)], "Freeze": [(0.40, 0.90)], "GP": [(0.45, 0.88)]})
    assert not claim(beaten, 0.10)["holds"] and claim(beaten, 0.10)["best"] == "GP"
    assert claim(_means({"SEQ": [(0.1, 0.9)]}), 0.1)["holds"] is None


def test_claim_breaks_a_rounding_tie_by_the_listed_order():
    # 0.1 + 0.2 = 0.30000000000000004 and 0.3: the same Task 0, apart from the last bit.
    means = _means({"SEQ": [(0.10, 0.92)], "Freeze": [(0.3, 0.90)], "GP": [(0.1 + 0.2, 0.90)]})
    assert means["task0_stop_mean"].iloc[2] > means["task0_stop_mean"].iloc[1]
    assert claim(means, 0.10)["best"] == "Freeze"
