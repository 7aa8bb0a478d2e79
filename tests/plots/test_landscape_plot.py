"""Loss-landscape figures from hand-built frames: the drawing is tied to the frame it was drawn from."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.contour import ContourSet

from spurious_diag.plots.landscape import landscape_panels, landscape_plot

METHODS = ["SEQ", "REPLAY(0.2)"]
TASKS = ["task0", "task1"]


def _landscape() -> pd.DataFrame:
    xs = np.arange(-2, 9) / 4  # −0.5 … 2.0
    ys = np.arange(-1, 7) / 4  # −0.25 … 1.5
    rows = []
    for m, method in enumerate(METHODS):
        for t, task in enumerate(TASKS):
            for x in xs:
                for y in ys:
                    loss = 1.0 + m + (x - t) ** 2 + 0.5 * (y - 0.5 * t) ** 2
                    rows.append({"method": method, "x": x, "y": y, "task": task, "loss": loss})
    return pd.DataFrame(rows)


def _trajectory() -> pd.DataFrame:
    steps = [0, 50, 100, 150, 200, 300, 400, 500]
    xs = [0.0, 0.4, 0.8, 1.0, 1.05, 1.1, 1.05, 1.0]
    ys = [0.0, 0.0, 0.0, 0.0, 0.3, 0.6, 0.9, 1.0]
    rows = []
    for m, method in enumerate(METHODS):
        for step, x, y in zip(steps, xs, ys):
            for task in TASKS:
                rows.append({"method": method, "step": step, "x": x + 0.1 * m, "y": y, "residual": 0.0, "task": task,
                             "loss": 1.0, "plane_loss": 1.0})
    # out of step order on purpose: the line must follow the steps
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)


def _contours(ax) -> ContourSet:
    found = [c for c in ax.collections if isinstance(c, ContourSet)]
    assert len(found) == 1
    return found[0]


def _line(ax, gid):
    found = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(found) == 1
    return found[0]


def test_contours_cover_exactly_the_frames_grid_and_its_losses():
    landscape = _landscape()
    fig = landscape_plot(landscape, method="REPLAY(0.2)", task="task1")
    ax = fig.axes[0]
    rows = landscape[(landscape["method"] == "REPLAY(0.2)") & (landscape["task"] == "task1")]
    cs = _contours(ax)
    extents = np.array([p.get_extents().bounds for p in cs.get_paths() if len(p.vertices)])
    x0, y0 = extents[:, 0].min(), extents[:, 1].min()
    x1, y1 = (extents[:, 0] + extents[:, 2]).max(), (extents[:, 1] + extents[:, 3]).max()
    assert (x0, x1) == pytest.approx((rows["x"].min(), rows["x"].max()))
    assert (y0, y1) == pytest.approx((rows["y"].min(), rows["y"].max()))
    assert ax.get_xlim() == pytest.approx((rows["x"].min(), rows["x"].max()))
    assert ax.get_ylim() == pytest.approx((rows["y"].min(), rows["y"].max()))
    assert cs.levels.min() <= rows["loss"].min() and cs.levels.max() >= rows["loss"].max()
    assert ax.get_xlabel() == "x (units of θ_b − θ_a)"
    assert ax.get_ylabel() == "y (units of θ_end − θ_b)"
    assert ax.get_title() == "REPLAY(0.2): Task 1"
    colorbar = [a for a in fig.axes if a is not ax]
    assert len(colorbar) == 1 and "Task 1 loss" in colorbar[0].get_ylabel()
    plt.close(fig)


def test_trajectory_line_is_the_frames_points_in_step_order():
    trajectory = _trajectory()
    fig = landscape_plot(_landscape(), trajectory, method="SEQ", task="task0")
    ax = fig.axes[0]
    line = _line(ax, "trajectory")
    expected = trajectory[(trajectory["method"] == "SEQ") & (trajectory["task"] == "task0")].sort_values("step")
    np.testing.assert_array_equal(line.get_xdata(), expected["x"].to_numpy())
    np.testing.assert_array_equal(line.get_ydata(), expected["y"].to_numpy())
    assert line.get_marker() == "o"
    texts = {t.get_text() for t in ax.texts}
    assert {"0", "500"} <= texts  # first and last steps labelled
    plt.close(fig)


def test_anchors_are_marked_and_named():
    fig = landscape_plot(_landscape(), method="SEQ", task="task0")
    ax = fig.axes[0]
    anchors = _line(ax, "anchors")
    assert list(zip(anchors.get_xdata(), anchors.get_ydata())) == [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]
    named = {t.get_text(): t.xy for t in ax.texts}
    assert named["θ_a"] == (0.0, 0.0) and named["θ_b"] == (1.0, 0.0) and named["θ_end"] == (1.0, 1.0)
    assert not [line for line in ax.get_lines() if line.get_gid() == "trajectory"]
    plt.close(fig)


def test_draws_into_a_given_axes_and_never_shows_or_saves(monkeypatch):
    calls = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append("show"))
    monkeypatch.setattr(plt.Figure, "savefig", lambda *a, **k: calls.append("save"))
    fig, ax = plt.subplots()
    assert landscape_plot(_landscape(), _trajectory(), method="SEQ", task="task1", ax=ax) is fig
    assert _line(ax, "trajectory") is not None
    landscape_panels(_landscape(), _trajectory(), methods=METHODS, tasks=TASKS)
    assert calls == []
    plt.close("all")


def test_missing_method_or_ragged_grid_is_refused():
    landscape = _landscape()
    with pytest.raises(ValueError, match="EWC"):
        landscape_plot(landscape, method="EWC", task="task0")
    ragged = landscape.drop(index=landscape.index[(landscape["method"] == "SEQ") & (landscape["task"] == "task0")][3])
    with pytest.raises(ValueError, match="full x × y grid"):
        landscape_plot(ragged, method="SEQ", task="task0")


def test_panels_one_per_task_and_method_with_shared_levels_per_task():
    landscape, trajectory = _landscape(), _trajectory()
    fig = landscape_panels(landscape, trajectory, methods=METHODS, tasks=TASKS)
    panels = [ax for ax in fig.axes if ax.get_xlabel()]
    assert len(panels) == len(METHODS) * len(TASKS)
    titles = [ax.get_title() for ax in panels]
    assert titles == [f"{m}: {t}" for t in ("Task 0", "Task 1") for m in METHODS]  # task rows × method columns
    positions = [(round(ax.get_position().y0, 3), round(ax.get_position().x0, 3)) for ax in panels]
    assert positions[0][1] < positions[1][1] and positions[0][0] > positions[2][0]  # side by side, rows top-down
    for r, task in enumerate(TASKS):
        row = panels[r * len(METHODS):(r + 1) * len(METHODS)]
        levels = [_contours(ax).levels for ax in row]
        np.testing.assert_array_equal(levels[0], levels[1])
        losses = landscape[landscape["task"] == task]["loss"]
        assert levels[0][0] == pytest.approx(losses.min()) and levels[0][-1] == pytest.approx(losses.max())
        for ax, method in zip(row, METHODS):
            line = _line(ax, "trajectory")
            expected = trajectory[(trajectory["method"] == method) & (trajectory["task"] == task)].sort_values("step")
            np.testing.assert_array_equal(line.get_xdata(), expected["x"].to_numpy())
    plt.close(fig)
