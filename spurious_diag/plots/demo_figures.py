"""Every figure of a demo run, drawn from its tables (name → DataFrame, as its CSV stems).

:data:`FIGURES` says which tables each figure needs and how to draw it; nothing here reads or
writes files. :func:`spurious_diag.report.figures.make_figures` draws them from a run's CSVs
and saves the PNGs, so a figure can always be regenerated from a run's tables alone.
"""

from __future__ import annotations

from typing import Callable, Optional

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from ._style import method_order
from .angles import angle_violins, window_angles_plot
from .curves import collapse_curve
from .features import feature_shift_heatmap, feature_view_plot
from .fisher_angle import fisher_angle_plot
from .forgetting import forgetting_map_heatmap, probe_map_heatmap, recovery_by_step_plot
from .landscape import landscape_panels
from .heatmaps import trajectory_heatmap, update_heatmap
from .matrices import accuracy_matrix_plot
from .probes import format_probe_plot, grafting_curve_plot, linear_probe_plot, recovery_curve, residual_shift_plot
from .sweeps import freeze_sweep

__all__ = ["FIGURES", "Tables", "checkpoint_steps", "feature_scatter_choice"]

Tables = dict[str, pd.DataFrame]


def checkpoint_steps(updates: pd.DataFrame) -> dict[int, int]:
    """Update index → the training step it ends at, from a trajectory audit's ``to_step`` column
    (the demo adds it from the ``checkpoint-N`` names); empty when the column is absent."""
    if "to_step" not in updates:
        return {}
    pairs = updates[["update", "to_step"]].dropna().drop_duplicates()
    return {int(u): int(s) for u, s in pairs.itertuples(index=False)}


def _num_layers(tables: Tables) -> Optional[int]:
    """Blocks of the audited model: one more than the highest layer of an attention or MLP tensor."""
    updates = tables.get("audit_updates")
    if updates is None:
        return None
    blocks = updates.loc[updates["module"].astype(str).str.match(r"(attn|mlp)\."), "layer"].dropna()
    return int(blocks.max()) + 1 if len(blocks) else None


def _heatmap(update: int) -> Callable[[Tables], Figure]:
    def draw(t: Tables) -> Figure:
        # Relative size: norms and matrices differ in scale, so RMS alone is all final norm.
        fig = update_heatmap(t["audit_updates"], update=update, value="rel", num_layers=_num_layers(t))
        fig.axes[0].set_title(f"Relative update size of Task {update - 1}")
        return fig
    return draw


def _trajectory(t: Tables) -> Figure:
    updates = t["trajectory_updates"]
    return trajectory_heatmap(updates, steps=checkpoint_steps(updates), value="rel", num_layers=_num_layers(t))


def _matrices(t: Tables) -> Figure:
    frame = t["accuracy_matrix"]
    methods = list(dict.fromkeys(frame["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.0), layout="constrained",
                             squeeze=False)
    for ax, method in zip(axes[0], methods):
        accuracy_matrix_plot(frame, method=method, at="end", ax=ax)
        ax.set_title(f"{method}, end of training")
    return fig


def _acc_before(t: Tables) -> Optional[float]:
    accuracy = t.get("diagnosis_accuracy")
    if accuracy is None:
        return None
    row = accuracy[(accuracy["model"] == "before") & (accuracy["task"] == "old")]
    return float(row["exact_match"].iloc[0]) if len(row) else None


def _dip_step(t: Tables) -> Optional[int]:
    """SEQ's dip step, from the run summaries."""
    runs = t.get("runs")
    if runs is None or "dip_step" not in runs:
        return None
    seq = runs[runs["method"] == "SEQ"]
    return int(seq["dip_step"].iloc[0]) if len(seq) else None


def _forgetting_map(arm: str) -> Callable[[Tables], Figure]:
    def draw(t: Tables) -> Figure:
        return forgetting_map_heatmap(t["forgetting_map"], arm=arm, dip_step=_dip_step(t))
    return draw


def _landscape(t: Tables) -> Figure:
    methods = method_order(t["landscape"]["method"])
    tasks = list(dict.fromkeys(t["landscape"]["task"]))
    return landscape_panels(t["landscape"], t.get("landscape_trajectory"), methods=methods, tasks=tasks)


def _weight_view(t: Tables) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 3.8), layout="constrained", sharey=True)
    for ax, value in zip(axes, ("angle_mean_deg", "paper_angle_mean_deg")):
        window_angles_plot(t["weight_view"], value=value, num_layers=_num_layers(t), ax=ax)
    return fig


def _windows(t: Tables) -> list[str]:
    return list(dict.fromkeys(t["feature_view"]["window"]))


def _feature_shift(t: Tables) -> Figure:
    windows = _windows(t)
    fig, axes = plt.subplots(1, len(windows), figsize=(5.0 * len(windows), 3.6), layout="constrained", squeeze=False)
    for ax, window in zip(axes[0], windows):
        feature_shift_heatmap(t["feature_view"], window=window, ax=ax)
    return fig


def feature_scatter_choice(summary: pd.DataFrame) -> tuple[str, int]:
    """(attribute, layer) whose first principal direction turns most in the early window of Task 1
    (the first window whose name has ``early``, else the first window)."""
    windows = list(dict.fromkeys(summary["window"]))
    early = next((w for w in windows if "early" in w), windows[0])
    rows = summary[(summary["window"] == early) & summary["pc_angle_deg"].notna()]
    best = rows.loc[rows["pc_angle_deg"].idxmax()]
    return str(best["attribute"]), int(best["layer"])


def _feature_scatter(t: Tables) -> Figure:
    attribute, layer = feature_scatter_choice(t["feature_view"])
    windows = _windows(t)
    fig, axes = plt.subplots(1, len(windows), figsize=(4.4 * len(windows), 3.8), layout="constrained", squeeze=False)
    for ax, window in zip(axes[0], windows):
        feature_view_plot(t["feature_points"], t["feature_view"], attribute=attribute, layer=layer, window=window,
                          ax=ax)
    return fig


def _fisher_angle(t: Tables) -> Figure:
    corr = t.get("fisher_correlation")
    r = float(corr["r"].iloc[0]) if corr is not None and len(corr) else None
    p = float(corr["p"].iloc[0]) if corr is not None and len(corr) else None
    return fisher_angle_plot(t["fisher_angle"], r=r, p=p)


# name → (tables it needs, how to draw it). Order: the report's order.
FIGURES: dict[str, tuple[tuple[str, ...], Callable[[Tables], Figure]]] = {
    "collapse_curve": (("curve", "points"), lambda t: collapse_curve(t["curve"], points=t["points"], task_index=1)),
    "collapse_by_attribute": (("per_attribute",), lambda t: collapse_curve(
        t["per_attribute"], by="attribute", methods=["SEQ"], task_index=1)),
    "heatmap_task0": (("audit_updates",), _heatmap(1)),
    "heatmap_task1": (("audit_updates",), _heatmap(2)),
    "trajectory_heatmap": (("trajectory_updates",), _trajectory),
    "angles": (("audit_pairs",), lambda t: angle_violins(t["audit_pairs"], num_layers=_num_layers(t))),
    "freeze_sweep": (("runs",), lambda t: freeze_sweep(t["runs"])),
    "accuracy_matrix": (("accuracy_matrix",), _matrices),
    "recovery": (("diagnosis_recovery",), lambda t: recovery_curve(t["diagnosis_recovery"],
                                                                   acc_before=_acc_before(t))),
    "format_probe": (("diagnosis_format_overall",), lambda t: format_probe_plot(t["diagnosis_format_overall"])),
    "linear_probe": (("diagnosis_linear_probe",), lambda t: linear_probe_plot(t["diagnosis_linear_probe"])),
    "grafting": (("diagnosis_grafting",), lambda t: grafting_curve_plot(t["diagnosis_grafting"],
                                                                         acc_before=_acc_before(t))),
    "residual_shift": (("diagnosis_residual_shift",), lambda t: residual_shift_plot(t["diagnosis_residual_shift"])),
    "forgetting_map": (("forgetting_map",), _forgetting_map("single")),
    "forgetting_map_bottom": (("forgetting_map",), _forgetting_map("bottom")),
    "probe_map": (("probe_map",), lambda t: probe_map_heatmap(t["probe_map"], dip_step=_dip_step(t))),
    "recovery_by_step": (("recovery_by_step",), lambda t: recovery_by_step_plot(t["recovery_by_step"],
                                                                               dip_step=_dip_step(t))),
    "landscape": (("landscape",), _landscape),
    "weight_view": (("weight_view",), _weight_view),
    "feature_shift": (("feature_view",), _feature_shift),
    "feature_scatter": (("feature_view", "feature_points"), _feature_scatter),
    "fisher_angle": (("fisher_angle",), _fisher_angle),
}
