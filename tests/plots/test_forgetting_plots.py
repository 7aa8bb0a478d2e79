"""The forgetting map, probe map and recovery-by-step figures, tied cell by cell to their frames."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spurious_diag.plots.forgetting import (forgetting_map_heatmap, map_grid, probe_map_heatmap,
                                            recovery_by_step_plot)

STEPS = [0, 10, 20, 150, 400]
LAYERS = [-1, 0, 1, 2]  # embeddings, two blocks, head


@pytest.fixture
def fmap():
    rng = np.random.default_rng(0)
    rows = []
    for step in STEPS:
        for arm in ("single", "bottom"):
            for layer in LAYERS:
                restored = math.nan if step == 0 else float(rng.uniform(-0.2, 1.0))
                rows.append({"step": step, "arm": arm, "layer": layer, "acc": float(rng.uniform()),
                             "restored": restored, "acc_step": 0.2, "acc_before": 0.9, "n_tensors": 1})
    return pd.DataFrame(rows)


def _cell_texts(ax):
    return [t.get_text() for t in ax.texts]


def test_forgetting_map_cells_and_ticks_equal_the_frame(fmap):
    fig = forgetting_map_heatmap(fmap, arm="single", dip_step=20)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in STEPS]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["head", "block 1", "block 0", "embeddings"]
    grid = map_grid(fmap[fmap["arm"] == "single"], "restored")
    expected = [f"{v:.2f}" for v in grid.to_numpy().ravel() if not math.isnan(v)]  # row by row, head first
    assert _cell_texts(ax) == expected
    # the dip's column is marked at its centre
    dip_lines = [line for line in ax.get_lines() if "dip" in line.get_label()]
    assert dip_lines and dip_lines[0].get_xdata()[0] == STEPS.index(20) + 0.5
    plt.close(fig)


def test_bottom_arm_and_accuracy_values(fmap):
    fig = forgetting_map_heatmap(fmap, arm="bottom", value="acc", window=None, annotate=True)
    grid = map_grid(fmap[fmap["arm"] == "bottom"], "acc")
    assert _cell_texts(fig.axes[0]) == [f"{v:.2f}" for v in grid.to_numpy().ravel()]
    plt.close(fig)
    with pytest.raises(ValueError, match="arm"):
        forgetting_map_heatmap(fmap, arm="top")


def test_probe_map_cells_are_means_over_attributes():
    rows = [{"step": s, "attribute": a, "layer": layer, "acc": (s + layer + 2) / 1000 + (0.1 if a == "x" else 0.3),
             "acc_shuffled": 0.0, "chance_majority": 0.0}
            for s in (0, 20) for a in ("x", "y") for layer in (-1, 0, 1)]
    frame = pd.DataFrame(rows)
    fig = probe_map_heatmap(frame)
    ax = fig.axes[0]
    means = frame.groupby(["layer", "step"])["acc"].mean()
    expected = [f"{means.loc[(layer, s)]:.2f}" for layer in (1, 0, -1) for s in (0, 20)]
    assert _cell_texts(ax) == expected
    assert [t.get_text() for t in ax.get_yticklabels()] == ["after block 1", "after block 0", "embedding output"]
    plt.close(fig)


def test_recovery_lines_are_the_frame_fractions():
    frame = pd.DataFrame([{"step": s, "n": n, "acc": 0.5, "control_acc": 0.1, "fraction": s / 400 + n / 1000,
                           "control_fraction": -s / 800, "acc_step": 0.2, "acc_before": 0.9}
                          for n in (10, 100) for s in (0, 50, 150, 400)])
    fig = recovery_by_step_plot(frame, dip_step=50)
    ax = fig.axes[0]
    for n in (10, 100):
        rows = frame[frame["n"] == n]
        model = next(line for line in ax.get_lines() if line.get_label() == f"recovered, n = {n}")
        control = next(line for line in ax.get_lines() if line.get_label() == f"never-aligned control, n = {n}")
        assert list(model.get_xdata()) == list(rows["step"]) and list(model.get_ydata()) == list(rows["fraction"])
        assert list(control.get_ydata()) == list(rows["control_fraction"])
    plt.close(fig)
    with pytest.raises(ValueError):
        recovery_by_step_plot(frame.iloc[:0])
