"""Audit figures: labelled axes, the expected ticks, drawing into a given ``ax``, nothing shown or saved."""

import matplotlib.pyplot as plt
import pytest

from spurious_diag import AuditOptions, audit
from spurious_diag.plots import angle_violins, trajectory_heatmap, update_heatmap
from tests.updates.planted import write_planted_chain


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    chain = write_planted_chain(str(tmp_path_factory.mktemp("planted")))
    return audit(chain, AuditOptions(rank=4), progress=False)


def test_update_heatmap_layers_and_modules(planted):
    fig = update_heatmap(planted.updates, update=2)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["head", "block 3", "block 2", "block 1", "block 0", "embeddings"]
    assert "attn.q_proj" in [t.get_text() for t in ax.get_xticklabels()]
    assert ax.get_xlabel() == "module" and ax.get_ylabel() == "layer"
    assert "RMS" in fig.axes[1].get_ylabel()  # the colorbar says what the color means
    plt.close(fig)


def test_angle_violins_draw_into_given_axes(planted):
    fig, axes = plt.subplots(1, 2)
    out = angle_violins(planted.pairs, (1, 2), ax=axes[1])
    assert out is fig and axes[1].get_ylim() == (0, 90)
    assert [t.get_text() for t in axes[1].get_xticklabels()][:2] == ["embeddings", "block 0"]
    assert "random subspaces" in axes[1].get_legend().get_texts()[0].get_text()
    plt.close(fig)


def test_trajectory_heatmap_uses_steps(planted):
    fig = trajectory_heatmap(planted.updates, steps={1: 100, 2: 250})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "250"] and ax.get_xlabel() == "training step"
    plt.close(fig)


def test_no_figure_is_left_open_or_saved(planted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = plt.get_fignums()
    fig = update_heatmap(planted.updates)
    plt.close(fig)
    assert plt.get_fignums() == before and list(tmp_path.iterdir()) == []
