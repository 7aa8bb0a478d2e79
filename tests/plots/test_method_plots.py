"""Comparison figures from hand-built frames: points at the means, stars on chosen settings, α curves."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from spurious_diag.plots.methods import alpha_curve_plot, tradeoff_plot


def _methods():
    rows = [("SEQ", "", 0, 0.10, 0.92), ("SEQ", "", 1, 0.20, 0.94), ("Freeze", "1", 0, 0.40, 0.90),
            ("Freeze", "1", 1, 0.50, 0.90), ("EWC", "1e8", 0, 0.30, 0.60), ("EWC", "1e8", 1, 0.30, 0.70)]
    return pd.DataFrame(rows, columns=["method", "setting", "seed", "task0_stop", "task1_stop"])


def test_tradeoff_points_sit_at_the_means_in_percent_and_every_chosen_setting_is_starred():
    fig = tradeoff_plot(_methods())
    ax = fig.axes[0]
    points = np.vstack([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    assert sorted(map(tuple, np.round(points, 6))) == sorted([(93.0, 15.0), (90.0, 45.0), (65.0, 30.0)])
    assert {t.get_text() for t in ax.texts} == {"SEQ", "Freeze(1)", "EWC(1e8)"}
    plt.close(fig)


def test_tradeoff_marks_only_the_chosen_candidate_and_draws_into_a_given_axes():
    candidates = pd.DataFrame({"method": ["Freeze", "Freeze"], "setting": ["1", "2"], "task0_val_stop": [0.4, 0.6],
                               "task1_stop": [0.9, 0.7], "chosen": [True, False]})
    fig, ax = plt.subplots()
    assert tradeoff_plot(candidates, y="task0_val_stop", bound=0.8, ax=ax) is fig
    assert [t.get_text() for t in ax.texts] == ["Freeze(1)"]
    assert [tuple(line.get_xdata()) for line in ax.get_lines()] == [(80.0, 80.0)]
    assert ax.get_ylabel() == "Task 0 validation at early stop (%)"
    plt.close(fig)


def test_alpha_curve_has_the_mean_over_seeds_per_alpha():
    curve = pd.DataFrame({"seed": [0, 0, 1, 1], "k": [100] * 4, "alpha": [0.5, 1.0, 0.5, 1.0],
                          "task0_test": [0.2, 0.4, 0.4, 0.6], "task0_val": [0.1, 0.2, 0.1, 0.2],
                          "last_task": [0.9, 0.5, 0.7, 0.3]})
    fig = alpha_curve_plot(curve)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["Task 0 (held out)"].get_ydata(), [30.0, 50.0])
    np.testing.assert_allclose(lines["newest task"].get_ydata(), [80.0, 40.0])
    plt.close(fig)


@pytest.mark.parametrize("column", ["task0_stop", "task1_stop"])
def test_tradeoff_needs_its_columns(column):
    with pytest.raises(KeyError):
        tradeoff_plot(_methods().drop(columns=column))
