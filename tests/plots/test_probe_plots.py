"""Probe figures from hand-built frames, and every new figure function neither shows nor saves."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spurious_diag import plots


def _data_lines(ax):
    return [line for line in ax.get_lines() if line.get_gid() != "reference"]


def _refs(ax):
    return [line for line in ax.get_lines() if line.get_gid() == "reference"]


def _recovery():
    return pd.DataFrame({"n": [0, 0, 10, 10, 100, 100], "model": ["forgot", "control"] * 3,
                         "acc_start": [0.2, 0.0] * 3, "acc": [0.2, 0.0, 0.3, 0.1, 0.6, 0.2],
                         "recovery_fraction": [0.0, -0.2857, 0.1429, -0.1429, 0.5714, 0.0],
                         "steps": [0, 0, 40, 40, 40, 40], "lr": 1e-4})


def _format():
    return pd.DataFrame({"model": ["before", "before", "after", "after", "base", "base"],
                         "format": ["task", "pretraining"] * 3, "exact_match": [0.9, 0.95, 0.2, 0.9, 0.0, 0.9],
                         "top1": [0.9, 0.9, 0.3, 0.9, 0.1, 0.9], "chance_top1": 0.05})


def _probe():
    rows = [{"model": m, "attribute": a, "layer": layer, "acc": 0.1 * layer + (0.1 if m == "before" else 0.0),
             "acc_shuffled": 0.05, "chance_majority": 0.1, "chance_uniform": 0.04}
            for m in ("before", "after") for a in ("city", "major") for layer in range(5)]
    return pd.DataFrame(rows)


def _grafting():
    rows = [("bottom", k, 0.2 + 0.2 * k, 0.9 - 0.1 * k, "ok") for k in range(4)]
    rows += [("top", k, 0.2 + 0.05 * k, 0.9 - 0.05 * k, "ok") for k in (1, 2, 3)]
    rows += [("embeddings", 0, 0.35, 0.85, "ok"), ("embeddings", 0, np.nan, np.nan, "skipped: tied")]
    return pd.DataFrame(rows, columns=["arm", "k", "old_acc", "new_acc", "status"])


def _shift():
    return pd.DataFrame({"layer": range(4), "n": 20, "mean_shift_rel": [0.0, 0.5, 0.7, 0.9],
                         "cka": [np.nan, 0.9, 0.8, 0.7], "cka_debiased": [np.nan, 0.85, 0.7, 0.6],
                         "pc1_angle_deg": [np.nan, 20.0, 40.0, 60.0]})


def test_recovery_curve_models_and_reference_lines():
    fig, axes = plt.subplots(1, 2)
    assert plots.recovery_curve(_recovery(), ax=axes[0]) is fig
    ax = axes[0]
    assert [line.get_label() for line in _data_lines(ax)] == ["forgotten model", "control (never learned the old task)"]
    np.testing.assert_allclose([line.get_ydata()[0] for line in _refs(ax)], [0.9, 0.2], atol=1e-3)  # before: implied
    assert list(ax.get_xticks()) == [0, 10, 100] and ax.get_ylabel() == "old-task exact match (fraction)"
    assert "lr 1e-4" in ax.get_title()
    plt.close(fig)


def test_format_probe_grouped_bars():
    fig = plots.format_probe_plot(_format())
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and [t.get_text() for t in ax.get_xticklabels()][:2] == ["before", "after"]
    assert ax.get_ylabel() == "exact match (fraction)" and not _refs(ax)
    top1 = plots.format_probe_plot(_format(), metric="top1").axes[0]
    np.testing.assert_allclose([line.get_ydata()[0] for line in _refs(top1)], [0.05])
    per_attribute = pd.concat([_format().assign(attribute="a"), _format().assign(attribute="b", exact_match=0.0)])
    assert plots.format_probe_plot(per_attribute).axes[0].patches[0].get_height() == pytest.approx(0.45)
    plt.close("all")


def test_linear_probe_lines_per_model_and_chance():
    fig = plots.linear_probe_plot(_probe())
    ax = fig.axes[0]
    assert [line.get_label() for line in _data_lines(ax)] == ["before", "after"]
    chance = [line for line in _refs(ax) if line.get_linestyle() == "--"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(0.1)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "embeddings" and labels[1] == "block 0" and labels[-1] == "block 3 + norm"
    assert ax.get_ylabel() == "held-out probe accuracy (fraction)"
    plt.close(fig)


def test_grafting_curve_arms_and_embeddings_marker():
    fig = plots.grafting_curve_plot(_grafting(), acc_before=0.9)
    ax = fig.axes[0]
    assert len(_data_lines(ax)) == 4 and [line.get_ydata()[0] for line in _refs(ax)] == [0.9]
    top_old = [line for line in ax.get_lines() if line.get_label() == "old task, top k blocks"][0]
    assert list(top_old.get_xdata()) == [0, 1, 2, 3]  # starts at the ungrafted model
    stars = [c for c in ax.collections if len(c.get_offsets())]
    assert len(stars) == 2 and all(len(c.get_offsets()) == 1 for c in stars)  # the skipped arm is not drawn
    assert list(ax.get_xticks()) == [0, 1, 2, 3] and ax.get_xlabel().startswith("blocks grafted")
    plt.close(fig)


def test_residual_shift_panels():
    fig = plots.residual_shift_plot(_shift())
    assert len(fig.axes) == 3 and fig.axes[2].get_ylim() == (0, 90)
    assert len(fig.axes[1].get_lines()) == 2 and "CKA" in fig.axes[1].get_ylabel()
    assert fig.axes[2].get_xlabel() == "residual stream after (layer)"
    _, ax = plt.subplots()
    assert plots.residual_shift_plot(_shift(), panels=("angle",), ax=ax) is ax.figure
    assert ax.get_ylabel() == "first-PC angle\n(degrees)"
    with pytest.raises(ValueError, match="single panel"):
        plots.residual_shift_plot(_shift(), ax=ax)
    plt.close("all")


def test_nothing_is_shown_or_saved(tmp_path, monkeypatch):
    from tests.plots.test_continual_plots import _curve, _summaries

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plt.show() called"))
    before = plt.get_fignums()
    R = pd.DataFrame([[0.9]], index=["task0"], columns=["task0"])
    for fig in (plots.collapse_curve(_curve()), plots.freeze_sweep(_summaries()), plots.accuracy_matrix_plot(R),
                plots.recovery_curve(_recovery()), plots.format_probe_plot(_format()),
                plots.linear_probe_plot(_probe()), plots.grafting_curve_plot(_grafting()),
                plots.residual_shift_plot(_shift())):
        assert isinstance(fig, plt.Figure)
        plt.close(fig)
    assert plt.get_fignums() == before and list(tmp_path.iterdir()) == []
