"""The EWC-vs-orthogonality scatter tied to its table: offsets, log axis, layer colors, title."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spurious_diag.plots.fisher_angle import fisher_angle_plot


def _table():
    return pd.DataFrame({
        "name": [f"t{i}" for i in range(6)], "part": "", "layer": pd.array([-1, 0, 1, 2, None, 1], dtype="Int64"),
        "module": "mlp.up_proj", "fisher_mean": [1e-6, 1e-4, 3e-3, 2e-2, 5e-5, np.nan],
        "angle_deg": [80.0, 60.0, 45.0, 10.0, 70.0, 30.0],
        "status": ["ok", "ok", "ok", "ok", "ok", "no Fisher for this tensor"],
    })


def test_scatter_offsets_equal_the_ok_rows_and_the_title_carries_r_and_p():
    table = _table()
    fig, axes = plt.subplots(1, 2)
    assert fisher_angle_plot(table, r=-0.8123, p=0.0421, ax=axes[0]) is fig
    ax = axes[0]
    (points,) = [c for c in ax.collections if c.get_gid() == "components"]
    ok = table[table["status"] == "ok"]
    np.testing.assert_allclose(np.asarray(points.get_offsets()), ok[["fisher_mean", "angle_deg"]].to_numpy())
    assert ax.get_xscale() == "log" and ax.get_ylim() == (0.0, 90.0)
    colors = points.get_facecolors()
    assert len(colors) == 5 and tuple(colors[4][:3]) == pytest.approx((0.6, 0.6, 0.6))  # no layer: grey
    assert tuple(colors[0]) != tuple(colors[3])  # embeddings and block 2 differ
    assert "r = -0.812" in ax.get_title() and "p = 0.042" in ax.get_title() and "5 components" in ax.get_title()
    plt.close(fig)


def test_linear_axis_for_a_zero_fisher_and_undefined_r():
    table = _table().assign(fisher_mean=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    ax = fisher_angle_plot(table, r=float("nan"), p=float("nan")).axes[0]
    assert ax.get_xscale() == "linear" and "r undefined" in ax.get_title()
    assert "Pearson" not in fisher_angle_plot(table).axes[0].get_title()
    with pytest.raises(ValueError, match="no components"):
        fisher_angle_plot(table.assign(status="no Fisher for this tensor"))
    plt.close("all")
