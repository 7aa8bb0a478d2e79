import pandas as pd
import pytest

from spurious_diag.continual.result import CURVE_COLUMNS, POINT_COLUMNS, SequenceResult
from spurious_diag.continual.tables import accuracy_matrix, attribute_table, backward_transfer, mean_over_seeds, run_summary
from spurious_diag.report.common import write_tables


def _constructed(first_task: int = 1) -> SequenceResult:
    """Task 1 trained for 300 steps from a Task 0 model: Task 0 test 0.9 → 0.1 (step 40) → 0.3 (stop, 250) → 0.2."""
    task0_test = {0: 0.9, 20: 0.4, 40: 0.1, 60: 0.15, 250: 0.3, 300: 0.2}
    task0_val = {0: 0.8, 20: 0.5, 40: 0.05, 60: 0.2, 250: 0.35, 300: 0.25}
    task1 = {0: 0.0, 20: 0.1, 40: 0.2, 60: 0.3, 250: 0.9, 300: 0.95}
    rows = []
    for step in task0_test:
        stamp = ["SEQ", 0, 1, "task1", step, 300 + step, True]
        rows.append(stamp + ["task0", "test", True, task0_test[step], task0_test[step]])
        rows.append(stamp + ["task0", "val", False, task0_val[step], task0_val[step]])
        rows.append(stamp + ["task1", "train", True, task1[step], task1[step]])
    rows.append(["SEQ", 0, 1, "task1", 240, 540, False, "task1", "train", True, 0.85, 0.9])  # a check row
    curve = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    points = pd.DataFrame([["SEQ", 0, 1, "task1", "start", 0, 300, True],
                           ["SEQ", 0, 1, "task1", "early_stop", 250, 550, True],
                           ["SEQ", 0, 1, "task1", "end", 300, 600, True]], columns=POINT_COLUMNS)
    attrs = pd.DataFrame([["SEQ", 0, 1, "task1", 250, 550, "task0", "test", a, 10, v, v, v]
                          for a, v in (("birth_city", 0.5), ("major", 0.1))],
                         columns=["method", "seed", "task_index", "task", "step", "global_step", "eval_task",
                                  "eval_set", "attribute", "n", "exact_match", "first_token_acc", "first_token_prob"])
    return SequenceResult("SEQ", 0, ["task0", "task1"], first_task, curve, attrs, points, pd.DataFrame())


def test_accuracy_matrix_and_backward_transfer():
    result = _constructed()
    end = accuracy_matrix(result)
    assert list(end.index) == ["task0", "task1"] and list(end.columns) == ["task0", "task1"]
    assert end.loc["task0", "task0"] == 0.9 and end.loc["task0", "task1"] == 0.0
    assert end.loc["task1", "task0"] == 0.2 and end.loc["task1", "task1"] == 0.95
    assert backward_transfer(end) == pytest.approx(0.2 - 0.9)
    stop = accuracy_matrix(result, at="early_stop")
    assert stop.loc["task1", "task0"] == 0.3 and stop.loc["task1", "task1"] == 0.9
    assert backward_transfer(stop) == pytest.approx(0.3 - 0.9)


def test_backward_transfer_over_three_tasks():
    R = pd.DataFrame([[0.9, 0.1, 0.0], [0.5, 0.8, 0.1], [0.3, 0.6, 0.9]], index=list("abc"), columns=list("abc"))
    assert backward_transfer(R) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / 2)


def test_summary_points():
    row = run_summary(_constructed(), dip_window=200).iloc[0]
    assert (row["after_step"], row["dip_step"], row["stop_step"], row["end_step"]) == (0, 40, 250, 300)
    assert row["task0_test_after"] == 0.9 and row["task0_test_dip"] == 0.1 and row["task0_val_dip"] == 0.05
    assert row["task0_test_stop"] == 0.3 and row["task1_train_stop"] == 0.9
    assert row["task0_test_end"] == 0.2 and row["task1_train_end"] == 0.95 and bool(row["stop_reached"])
    # a dip outside the window does not count
    assert run_summary(_constructed(), dip_window=30).iloc[0]["dip_step"] == 20


def test_attribute_table_mean_over_seeds_and_csv(tmp_path):
    result = _constructed()
    table = attribute_table(result, point="early_stop")
    assert list(table["attribute"]) == ["birth_city", "major"] and set(table["step"]) == {250}
    summaries = pd.concat([run_summary(result), run_summary(result).assign(seed=1, task0_test_stop=0.5)])
    means = mean_over_seeds(summaries).iloc[0]
    assert means["task0_test_stop_mean"] == pytest.approx(0.4) and means["n_seeds"] == 2
    assert means["task0_test_stop_std"] == pytest.approx(pd.Series([0.3, 0.5]).std())
    paths = write_tables(tmp_path, {"summary": summaries, "R": accuracy_matrix(result)}, index=["R"])
    assert [p.name for p in paths] == ["summary.csv", "R.csv"]
    assert pd.read_csv(tmp_path / "R.csv", index_col=0).loc["task1", "task0"] == 0.2
