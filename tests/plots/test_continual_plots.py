"""Sequential-run figures from hand-built frames: one line per method, k ticks, reference lines, labels."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spurious_diag.plots import accuracy_matrix_plot, collapse_curve, freeze_sweep


def _curve(extra_step=True):
    rows = []
    for method, drop in (("SEQ", 0.6), ("Freeze(1)", 0.2)):
        for seed in (0, 1):
            for step in (0, 50, 100, 200):
                acc = 0.9 - (drop if step else 0.0) + 0.02 * seed
                rows.append((method, seed, 1, "task1", step, True, "task0", "test", True, acc))
                rows.append((method, seed, 1, "task1", step, True, "task1", "train", True, step / 200))
            if extra_step:  # an early-stop evaluation of one seed only
                rows.append((method, seed, 1, "task1", 150 + seed * 10, True, "task0", "test", True, 0.0))
    return pd.DataFrame(rows, columns=["method", "seed", "task_index", "task", "step", "full", "eval_task",
                                       "eval_set", "primary", "exact_match"])


def _points():
    return pd.DataFrame([("SEQ", 0, 1, "early_stop", 150, True), ("SEQ", 1, 1, "early_stop", 200, False),
                         ("Freeze(1)", 0, 1, "early_stop", 150, True), ("Freeze(1)", 1, 1, "early_stop", 160, True)],
                        columns=["method", "seed", "task_index", "point", "step", "reached"])


def test_collapse_curve_one_line_per_method_into_given_axes():
    fig, axes = plt.subplots(1, 2)
    out = collapse_curve(_curve(), window=120, ax=axes[1])
    ax = axes[1]
    assert out is fig and [line.get_label() for line in ax.get_lines()] == ["SEQ", "Freeze(1)"]
    seq = ax.get_lines()[0]
    assert list(seq.get_xdata()) == [0, 50, 100, 200]  # the one-seed early-stop steps are left out of the mean
    np.testing.assert_allclose(seq.get_ydata(), [0.91, 0.31, 0.31, 0.31])
    assert ax.get_xlabel() == "Task 1 step" and ax.get_ylabel() == "Task 0 (test) exact match (fraction)"
    assert "first 120 steps" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(ax.collections) == 2  # one ±s.d. band per method
    plt.close(fig)


def test_collapse_curve_marks_reached_early_stops_only():
    fig = collapse_curve(_curve(), points=_points(), methods=["SEQ"])
    ax = fig.axes[0]
    markers = [c for c in ax.collections if c.get_offsets().shape[0] and c.get_offsets().shape[1] == 2
               and type(c).__name__ == "PathCollection"]
    assert len(ax.get_lines()) == 1 and sum(len(c.get_offsets()) for c in markers) == 1
    assert "early stop (per seed)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_collapse_curve_per_attribute():
    curve = _curve(extra_step=False).drop(columns=["full", "primary"])
    attrs = pd.concat([curve.assign(attribute=a, exact_match=curve["exact_match"] * f) for a, f in
                       (("major", 1.0), ("birth_city", 0.5))])
    fig = collapse_curve(attrs, by="attribute")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["birth_city", "major"]
    assert fig.axes[0].get_title().endswith(": SEQ")
    one = collapse_curve(attrs, attribute="birth_city", window=None)
    np.testing.assert_allclose(one.axes[0].get_lines()[0].get_ydata()[0], 0.455)
    with pytest.raises(ValueError, match="per_attribute"):
        collapse_curve(_curve(), by="attribute")
    plt.close("all")


def _summaries():
    rows = []
    for method, old, new in (("SEQ", 0.1, 0.95), ("Freeze(0)", 0.2, 0.95), ("Freeze(2)", 0.5, 0.9),
                             ("Freeze(4)", 0.8, 0.3), ("EWC(1e6)", 0.3, 0.9)):
        for seed in (0, 1):
            row = {"method": method, "seed": seed}
            for point in ("dip", "stop", "end"):
                row[f"task0_test_{point}"] = old + 0.02 * seed
                row[f"task1_train_{point}"] = new
            rows.append(row)
    return pd.DataFrame(rows)


def test_freeze_sweep_ticks_lines_and_references():
    fig = freeze_sweep(_summaries())
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [0, 2, 4]
    assert len(ax.containers) == 6  # 3 points × (old, new), error bars over seeds
    refs = [line for line in ax.get_lines() if line.get_gid() == "reference"]
    assert len(refs) == 6 and sorted({round(line.get_ydata()[0], 3) for line in refs}) == [0.11, 0.95]
    assert ax.get_xlabel().startswith("blocks frozen, k") and ax.get_ylabel() == "exact match (fraction)"
    plt.close(fig)


def test_freeze_sweep_accepts_means_over_seeds():
    from spurious_diag.continual.tables import mean_over_seeds

    fig, ax = plt.subplots()
    assert freeze_sweep(mean_over_seeds(_summaries()), points=("stop",), ax=ax) is fig
    old = ax.containers[0].lines[0]
    np.testing.assert_allclose(old.get_ydata(), [0.21, 0.51, 0.81])
    assert len([line for line in ax.get_lines() if line.get_gid() == "reference"]) == 2
    plt.close(fig)


def test_accuracy_matrix_plot_wide_and_long():
    R = pd.DataFrame([[0.9, 0.0], [0.2, 0.95]], index=pd.Index(["task0", "task1"], name="after"),
                     columns=["task0", "task1"])
    fig = accuracy_matrix_plot(R)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["0.90", "0.00", "0.20", "0.95"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Task 0", "Task 1"]
    assert ax.get_xlabel() == "evaluated on" and fig.axes[1].get_ylabel() == "exact match (fraction)"
    long = R.reset_index().melt(id_vars="after", var_name="task", value_name="exact_match")
    both = pd.concat([long.assign(method="SEQ", seed=s, exact_match=long["exact_match"] + 0.02 * s)
                      for s in (0, 1)] + [long.assign(method="Freeze(1)", seed=0)])
    with pytest.raises(ValueError, match="method"):
        accuracy_matrix_plot(both)
    fig2 = accuracy_matrix_plot(both, method="SEQ")
    assert fig2.axes[0].texts[2].get_text() == "0.21" and "2 seeds" in fig2.axes[0].get_title()
    plt.close("all")
