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

from .angles import angle_violins
from .curves import collapse_curve
from .heatmaps import trajectory_heatmap, update_heatmap
from .matrices import accuracy_matrix_plot
from .probes import format_probe_plot, grafting_curve_plot, linear_probe_plot, recovery_curve, residual_shift_plot
from .sweeps import freeze_sweep

__all__ = ["FIGURES", "Tables", "checkpoint_steps"]

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
}
