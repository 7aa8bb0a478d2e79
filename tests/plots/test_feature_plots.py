"""Feature-view figures tied to their frames: scatter offsets, the mean-shift arrow, cell texts, tick labels."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spurious_diag.plots._style import hidden_layer_label
from spurious_diag.plots.features import FEATURE_VALUE_FORMATS, feature_shift_heatmap, feature_view_plot

ATTRIBUTES = ["birth_city", "major", "employer"]


def _frames():
    rng = np.random.default_rng(0)
    points, summary = [], []
    for window in ("Task 0", "Task 1 early"):
        for a, attribute in enumerate(ATTRIBUTES):
            for layer in range(3):
                before = rng.normal(size=(6, 2))
                after = before + np.array([1.0 + layer, -0.5 * a])
                for which, cloud in (("before", before), ("after", after)):
                    points += [{"window": window, "attribute": attribute, "layer": layer, "which": which,
                                "person_id": 10 + i, "pc1": x, "pc2": y} for i, (x, y) in enumerate(cloud)]
                angle = np.nan if layer == 0 else 10.0 * layer + 3.14159 * a + (5.0 if window == "Task 0" else 0.0)
                summary.append({"window": window, "attribute": attribute, "layer": layer, "n": 6,
                                "mean_shift": 1.23456 * (layer + 1), "mean_shift_rel": 0.111 * (a + 1),
                                "pc_angle_deg": angle})
    return pd.DataFrame(points), pd.DataFrame(summary)


def test_feature_view_plot_draws_the_frame_points_and_the_mean_shift():
    points, summary = _frames()
    fig, axes = plt.subplots(1, 2)
    assert feature_view_plot(points, summary, attribute="major", layer=2, window="Task 1 early", ax=axes[1]) is fig
    ax = axes[1]
    rows = points[(points["window"] == "Task 1 early") & (points["attribute"] == "major") & (points["layer"] == 2)]
    clouds = {c.get_gid(): c for c in ax.collections}
    assert set(clouds) == {"before", "after"}
    for which in ("before", "after"):
        want = rows[rows["which"] == which][["pc1", "pc2"]].to_numpy()
        np.testing.assert_allclose(np.asarray(clouds[which].get_offsets()), want)
    arrow = next(t for t in ax.texts if t.get_gid() == "mean_shift")
    np.testing.assert_allclose(arrow.xy, rows[rows["which"] == "after"][["pc1", "pc2"]].mean())
    np.testing.assert_allclose(arrow.xyann, rows[rows["which"] == "before"][["pc1", "pc2"]].mean())
    facts = summary[(summary["window"] == "Task 1 early") & (summary["attribute"] == "major") & (summary["layer"] == 2)]
    title = ax.get_title()
    assert "block 1 + norm" in title and "major" in title
    assert f"PC angle {facts['pc_angle_deg'].iloc[0]:.1f}°" in title
    assert f"mean shift {facts['mean_shift'].iloc[0]:.3g}" in title
    undefined = feature_view_plot(points, summary, attribute="major", layer=0, window="Task 0").axes[0].get_title()
    assert "PC angle undefined" in undefined and "embeddings" in undefined
    with pytest.raises(ValueError, match="windows there"):
        feature_view_plot(points, summary, attribute="major", layer=2, window="nope")
    plt.close("all")


@pytest.mark.parametrize("value", ["pc_angle_deg", "mean_shift", "mean_shift_rel"])
def test_feature_shift_heatmap_cells_and_ticks_equal_the_frame(value):
    _, summary = _frames()
    fig = feature_shift_heatmap(summary, window="Task 0", value=value)
    ax = fig.axes[0]
    rows = summary[summary["window"] == "Task 0"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ATTRIBUTES
    assert [t.get_text() for t in ax.get_xticklabels()] == [hidden_layer_label(x, 3) for x in range(3)]
    grid = rows.pivot(index="attribute", columns="layer", values=value).reindex(ATTRIBUTES)
    want = [format(v, FEATURE_VALUE_FORMATS[value]) for v in grid.to_numpy().ravel() if np.isfinite(v)]
    assert [t.get_text() for t in ax.texts] == want  # row by row; NaN cells left blank
    assert len(want) == (6 if value == "pc_angle_deg" else 9)
    assert "Task 0" in ax.get_title()
    plt.close(fig)


def test_feature_shift_heatmap_rejects_unknown_window_or_value():
    _, summary = _frames()
    with pytest.raises(ValueError, match="window"):
        feature_shift_heatmap(summary, window="Task 9")
    with pytest.raises(ValueError, match="column"):
        feature_shift_heatmap(summary, window="Task 0", value="cka")
