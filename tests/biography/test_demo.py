"""The main job: ``spurious-diag demo`` (a quick run shared by every test) and ``spurious-diag figures``."""

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from spurious_diag.cli import main
from spurious_diag.plots.demo_figures import FIGURES
from spurious_diag.report.figures import read_tables

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["-q", "--threads", "1", "demo", "--quick", "--jobs", "1", "--out", str(out)]) == 0
    return out


def test_the_demo_writes_report_tables_summary_and_every_figure(demo_run):
    for name in ("report.md", "summary.json", "sweep.csv", "runs.csv", "curve.csv", "audit_updates.csv",
                 "trajectory_updates.csv", "diagnosis_recovery.csv", "diagnosis_grafting.csv"):
        assert (demo_run / name).is_file(), name
    assert sorted(p.stem for p in (demo_run / "figures").glob("*.png")) == sorted(FIGURES)
    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["diagnosis"]["verdict"] in ("spurious", "real", "inconclusive")
    assert {"task0_after", "seq", "freeze", "recovery", "targets", "best_k_validation"} <= set(summary)
    for key in ("fraction", "control_fraction", "lr", "steps"):
        assert key in summary["recovery"]
    assert summary["freeze"]["k"] == summary["diagnosis"]["recommended_k"]


def test_report_numbers_equal_the_csvs(demo_run):
    report = (demo_run / "report.md").read_text()
    sweep = pd.read_csv(demo_run / "sweep.csv").set_index("method")
    summary = json.loads((demo_run / "summary.json").read_text())
    for method, label in (("SEQ", "SEQ"), (summary["freeze"]["method"], f"{summary['freeze']['method']} (recommended)")):
        row = sweep.loc[method]
        line = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == f"{row['task0_test_after']:.3f}"
        assert cells[2] == f"{row['task0_test_dip']:.3f} (step {int(row['dip_step'])})"
        stop = f"step {int(row['stop_step'])}" if row["stop_reached"] else f"never reached: its end, step {int(row['stop_step'])}"
        assert cells[3] == f"{row['task0_test_stop']:.3f} ({stop})"
        assert cells[4] == f"{row['task0_test_end']:.3f}"
        assert cells[5] == f"{row['task1_train_stop']:.3f}"
        assert cells[7] == f"{row['task0_val_stop']:.3f}"
    recovery = pd.read_csv(demo_run / "diagnosis_recovery.csv")
    best = recovery[(recovery["model"] == "forgot") & (recovery["n"] == summary["recovery"]["best_n"])].iloc[0]
    assert f"goes to {best['acc']:.3f} (recovery fraction {best['recovery_fraction']:.3f})" in report
    for target in summary["targets"]:
        assert f"| {target['target']} | {target['value']:.3f} |" in report


@pytest.fixture(scope="module")
def figures(demo_run):
    tables = read_tables(demo_run)
    with plt.rc_context({"figure.max_open_warning": 0}):  # every figure of the run, open at once on purpose
        drawn = {name: draw(tables) for name, (_, draw) in FIGURES.items()}
    yield drawn, tables
    plt.close("all")


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def test_every_figure_has_labelled_axes(figures):
    drawn, _ = figures
    for name, fig in drawn.items():
        axes = _data_axes(fig)
        assert all(ax.get_ylabel() for ax in axes), name
        assert any(ax.get_xlabel() for ax in axes), name  # stacked panels label their shared x axis once


def test_figure_ticks_follow_the_tables(figures):
    drawn, tables = figures
    sweep_ks = tables["runs"]["method"].str.extract(r"Freeze\((\d+)\)")[0].dropna().nunique()
    assert len(_data_axes(drawn["freeze_sweep"])[0].get_xticks()) == sweep_ks
    layers = tables["audit_updates"]["layer"].dropna().nunique()
    assert len(_data_axes(drawn["heatmap_task1"])[0].get_yticks()) == layers
    steps = tables["trajectory_updates"]["update"].nunique()
    assert len(_data_axes(drawn["trajectory_heatmap"])[0].get_xticks()) == steps
    methods = tables["curve"].query("task_index == 1")["method"].nunique()
    assert len([line for line in _data_axes(drawn["collapse_curve"])[0].get_lines()
                if not line.get_label().startswith("_")]) >= methods


def test_figures_command_redraws_a_run(demo_run, tmp_path):
    out = tmp_path / "figs"
    assert main(["-q", "figures", "--run", str(demo_run), "--out", str(out)]) == 0
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(FIGURES)


def test_figures_command_rejects_a_directory_that_is_not_a_run(tmp_path):
    assert main(["-q", "figures", "--run", str(tmp_path), "--out", str(tmp_path / "f")]) != 0


def test_demo_refuses_foreign_non_empty_dir(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["-q", "demo", "--out", str(out)]) == 7
    assert (out / "keep.txt").read_text() == "x"


# The paper's views (forgetting maps, recovery over time, landscape, weight, feature, Fisher).

def test_the_views_tables_have_their_columns(demo_run):
    from spurious_diag.probes.forgetting_map import FORGETTING_MAP_COLUMNS

    columns = {"forgetting_map": FORGETTING_MAP_COLUMNS,
               "recovery_by_step": ["step", "n", "acc", "control_acc", "fraction"],
               "landscape": ["method", "x", "y", "task", "loss"]}
    for name, expected in columns.items():
        frame = pd.read_csv(demo_run / f"{name}.csv")
        assert list(frame.columns[:len(expected)]) == expected, name
    fisher = pd.read_csv(demo_run / "fisher_angle.csv")
    assert fisher["name"].is_unique and {"fisher_mean", "angle_deg"} <= set(fisher.columns)
    fmap = pd.read_csv(demo_run / "forgetting_map.csv")
    assert set(fmap["arm"]) == {"single", "bottom"}
    chain = sorted(fmap["step"].unique())
    assert sorted(pd.read_csv(demo_run / "recovery_by_step.csv")["step"].unique()) == chain
    # reverting every layer restores the accuracy before Task 1 exactly, at every checkpoint
    deepest = fmap[(fmap["arm"] == "bottom") & (fmap["layer"] == fmap["layer"].max())]
    assert (deepest["acc"] == deepest["acc_before"]).all() and len(deepest) == len(chain)
    landscape = pd.read_csv(demo_run / "landscape.csv")
    summary = json.loads((demo_run / "summary.json").read_text())
    assert set(landscape["method"]) == {"SEQ", summary["freeze"]["method"], "REPLAY(0.1)"}


def test_views_report_numbers_equal_the_csvs(demo_run):
    report = (demo_run / "report.md").read_text()
    views = json.loads((demo_run / "summary.json").read_text())["views"]
    fmap = pd.read_csv(demo_run / "forgetting_map.csv")
    at = fmap[(fmap["step"] == views["forgetting_map"]["step"]) & (fmap["arm"] == "single")]
    best = at.loc[at["restored"].idxmax()]
    assert int(best["layer"]) == views["forgetting_map"]["most_restoring_layer"]
    assert f"restores the most, {best['restored']:.3f} of the loss" in report
    recovery = pd.read_csv(demo_run / "recovery_by_step.csv").set_index("step")
    for point in views["recovery_by_step"]["at"].values():
        row = recovery.loc[point["step"]]
        fraction = "–" if math.isnan(row["fraction"]) else f"{row['fraction']:.3f}"
        assert f"step {point['step']}: {fraction}" in report
    corr = pd.read_csv(demo_run / "fisher_correlation.csv").iloc[0]
    if not math.isnan(corr["r"]):
        assert f"Pearson r = {corr['r']:.3f}" in report


def test_view_figures_follow_their_tables(figures):
    drawn, tables = figures
    fmap = tables["forgetting_map"]
    ax = _data_axes(drawn["forgetting_map"])[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in sorted(fmap["step"].unique())]
    assert len(ax.get_yticks()) == fmap["layer"].nunique()
    single = fmap[fmap["arm"] == "single"]
    assert len(ax.texts) == single["restored"].notna().sum()
    recovery = tables["recovery_by_step"]
    ax = _data_axes(drawn["recovery_by_step"])[0]
    n = int(recovery["n"].iloc[0])
    line = next(line for line in ax.get_lines() if line.get_label() == f"recovered, n = {n}")
    rows = recovery[recovery["n"] == n].sort_values("step")
    assert list(line.get_xdata()) == list(rows["step"])
    np.testing.assert_array_equal(line.get_ydata(), rows["fraction"].to_numpy())
    methods = tables["landscape"]["method"].nunique()
    tasks = tables["landscape"]["task"].nunique()
    assert len(_data_axes(drawn["landscape"])) == methods * tasks
    fisher = tables["fisher_angle"]
    offsets = _data_axes(drawn["fisher_angle"])[0].collections[0].get_offsets()
    assert len(offsets) == (fisher["status"] == "ok").sum()
    weights = tables["weight_view"]
    ax = _data_axes(drawn["weight_view"])[0]
    early = weights[(weights["comparison"] == "Task 0 vs early") & (weights["status"] == "ok")]
    line = next(line for line in ax.get_lines() if line.get_label() == "Task 0 vs early")
    np.testing.assert_allclose(line.get_ydata(), early.groupby("layer")["angle_mean_deg"].mean().to_numpy())
