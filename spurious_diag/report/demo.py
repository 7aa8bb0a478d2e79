"""Write a demo run: its tables as CSV, ``summary.json``, the figures and ``report.md``.

Every number in ``report.md`` is read from ``summary.json`` or a table written beside it, and
printed with 3 decimals (exact match as a fraction), so the report and the CSVs agree.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import pandas as pd

from ..outputs import atomic_write_text
from .common import format_value, layer_name, write_csv, write_summary
from .figures import make_figures

__all__ = ["SCHEMA_VERSION", "write_demo_outputs", "demo_markdown", "FIGURE_CAPTIONS"]

SCHEMA_VERSION = 1

logger = logging.getLogger(__name__)

FIGURE_CAPTIONS: dict[str, str] = {
    "collapse_curve": "Task 0 held-out accuracy during Task 1: SEQ and the Freeze(k) sweep. The shaded band is the "
                      "first ~150 steps, where the paper finds most of the forgetting; markers are early-stop points.",
    "collapse_by_attribute": "The same collapse for SEQ, per attribute.",
    "heatmap_task0": "Layer-wise relative update size ‖ΔW‖/‖W‖ of Task 0 (base → after Task 0), per block and module.",
    "heatmap_task1": "Layer-wise relative update size ‖ΔW‖/‖W‖ of Task 1 under SEQ (after Task 0 → SEQ at its dip).",
    "trajectory_heatmap": "Relative update size between consecutive SEQ checkpoints (10 steps apart) in the first "
                          "200 steps of Task 1, per layer.",
    "angles": "Principal angles between the Task 0 and Task 1 updates per layer; the dashed line is the "
              "random-subspace expectation.",
    "freeze_sweep": "Task 0 and Task 1 accuracy against the freeze depth k, at the dip, the early stop and the end; "
                    "SEQ as horizontal lines.",
    "accuracy_matrix": "Accuracy matrix R[after task i, on task j].",
    "recovery": "Recovery of SEQ at its dip with n examples about other people, against the never-aligned control.",
    "format_probe": "The same facts asked in the task (QA) format and in the pretraining (biography) format.",
    "linear_probe": "Linear probes of the attributes per layer, with the chance baseline.",
    "grafting": "Task 0 accuracy of SEQ at its dip with the bottom k blocks (blocks 0 to k − 1) or the top k blocks "
                "put back from the Task 0 model.",
    "residual_shift": "Residual-stream shift per layer between the Task 0 model and SEQ at its dip.",
    "forgetting_map": "The forgetting map: at each SEQ checkpoint of Task 1 (columns) the share of the lost Task 0 "
                      "accuracy that comes back when one layer (rows) alone is put back to its value before Task 1, "
                      "(acc with it reverted − acc at the step) / (acc before Task 1 − acc at the step). Blank: less "
                      "than 5 points lost, nothing to restore. The box marks the paper's first 150 steps, the dashed "
                      "line SEQ's dip. The paper places the damage in the bottom layers (embeddings and first "
                      "blocks) during those first steps; this map tests that layer by layer. "
                      "Table: `forgetting_map.csv` (arm `single`).",
    "forgetting_map_bottom": "The same with the bottom layers reverted together, from the embeddings up to the row's "
                             "layer (the top row reverts everything and restores it all, by construction). The "
                             "lowest row that reaches ~1 is how deep the alignment damage goes. "
                             "Table: `forgetting_map.csv` (arm `bottom`).",
    "probe_map": "Linear probes of the attribute values per layer (−1: the embedding output; l: the output of block "
                 "l) at the SEQ checkpoints, on held-out people, mean over attributes: is the knowledge still "
                 "decodable where the output is lost? The paper's claim is that it is (the knowledge is intact "
                 "and only the alignment breaks). Table: `probe_map.csv`.",
    "recovery_by_step": "Recovery over time: from every SEQ checkpoint of Task 1, the few-shot recovery chosen on "
                        "the validation people (solid) and the never-aligned control with the same examples and "
                        "settings (dashed), as recovery fractions. The paper: 96% of Task 0 still recoverable after "
                        "150 steps of Task 1. Table: `recovery_by_step.csv`.",
    "landscape": "The loss landscape (the paper's §3.3): Task 0 (top) and Task 1 (bottom) loss on the plane "
                 "through each method's own checkpoints at θ_a (the start of the early window), θ_b (its end) and "
                 "θ_end (the end of Task 1), with the checkpoints projected onto it. Our early window is SEQ's "
                 "dip window scaled as the paper's steps 100 → 150. The paper finds SEQ's early steps leave Task "
                 "0's basin while REPLAY stays nearer it. Tables: `landscape.csv`, `landscape_trajectory.csv`.",
    "weight_view": "The weight view with the paper's windows: the angle between Task 0's update and Task 1's early "
                   "window (a → b), and between that window and the rest of Task 1 (b → end), per layer; left ours "
                   "(principal angles of the top-8 subspaces), right the paper's quantity (z-scored updates, 99% "
                   "energy, one-sided angle). The paper reads near-orthogonal early updates in the bottom layers "
                   "as the cause of the forgetting. Table: `weight_view.csv`.",
    "feature_shift": "The feature view (the paper's §3.5): the angle between the first principal components of the "
                     "last query token's hidden states before and after each window, per attribute and layer "
                     "(layer 0: the embeddings). The paper finds the early window of Task 1 turns the bottom "
                     "layers' features most. Table: `feature_view.csv`.",
    "feature_scatter": "Those hidden states projected on the before-window's first two principal components, for the "
                       "attribute and layer whose principal direction turns most in Task 1's early window; the "
                       "arrow is the mean shift. Table: `feature_points.csv`.",
    "fisher_angle": "EWC against orthogonality (the paper's §5.1): per weight, the mean Task 0 Fisher (as EWC "
                    "computes it) against the angle between Task 0's update and Task 1's early window. The paper "
                    "found no correlation (r = 0.054, p = 0.71): EWC protects weights regardless of where the "
                    "orthogonal updates land. Table: `fisher_angle.csv`.",
}


def _f(x: Any) -> str:
    return format_value(x, ".3f")


def _scores_row(name: str, scores: Optional[Mapping[str, Any]]) -> str:
    if not scores:
        return f"| {name} | – | – | – | – | – | – | – |\n"
    t0, t1 = scores["task0"], scores["task1"]
    stop = f"step {scores['stop_step']}" if scores.get("stop_reached", True) else \
        f"never reached: its end, step {scores['stop_step']}"
    return (f"| {name} | {_f(t0['after'])} | {_f(t0['dip'])} (step {scores['dip_step']}) | "
            f"{_f(t0['stop'])} ({stop}) | {_f(t0['end'])} | {_f(t1['stop'])} | {_f(t1['end'])} | "
            f"{_f(scores['task0_validation']['stop'])} |\n")


def demo_markdown(summary: Mapping[str, Any], figures: Mapping[str, str]) -> str:
    """``report.md`` of a demo run from its ``summary.json`` content and figure paths (relative)."""
    out = io.StringIO()
    recipe = summary["config"]["recipe"]
    out.write("# spurious_diag demo: spurious forgetting on the Biography scenario\n\n")
    out.write(f"A tiny Llama pretrained on synthetic biographies (the shipped base model) learns Task 0 (QA about "
              f"people it read about, {recipe['task0_steps']} steps), then Task 1 (QA about new people, "
              f"{recipe['task1_steps']} steps at lr {recipe['task1_lr']:g}) with plain sequential fine-tuning (SEQ) "
              f"and with the embeddings and bottom blocks frozen. Task 0 is scored on held-out people; "
              f"every choice (k, recovery settings) is made on validation people. Task 1 data order: seed "
              f"{summary['config']['seed']}. Exact match (fraction).\n\n")
    out.write("Terms, once:\n\n"
              "- **SEQ**: Task 1 trains every weight. **Freeze(k)**: the embeddings and the bottom k blocks (block 0 "
              "up to block k − 1) are frozen during Task 1; Freeze(0) freezes the embeddings alone.\n"
              f"- **Dip**: a method's lowest Task 0 accuracy within the first {recipe['dip_window']} steps of Task 1, "
              "at that method's own step (shown beside it). A method whose Task 0 accuracy is still falling at step "
              f"{recipe['dip_window']} has its dip there and lower values later.\n"
              f"- **Early stop**: the first evaluation where Task 1 reaches {recipe['early_stop']:.2f}; a method "
              "that never reaches it is scored at its end instead (marked in the tables and the sweep figure).\n"
              "- **Recovery**: a copy of the forgotten model is fine-tuned briefly on n Task 0 examples about "
              "*other* people, then scored on the held-out people. Its **recovery fraction** is the share of the "
              "lost Task 0 accuracy that comes back: (accuracy after recovery − accuracy at the dip) / "
              "(accuracy before Task 1 − accuracy at the dip); 1 means all of it.\n"
              "- **Never-aligned control**: the shipped base model, which read the same biographies but was never "
              "trained on Task 0 QA, recovered with the same examples and settings. It measures what n examples "
              "teach from scratch. Its fraction uses the same formula, with SEQ's numbers in it, so it is negative "
              "when the control ends below SEQ's dip accuracy, even though its own accuracy rose.\n\n")
    out.write("## Results\n\n")
    out.write("| method | Task 0 after Task 0 | Task 0 at dip | Task 0 at early stop | Task 0 at end | "
              "Task 1 at early stop | Task 1 at end | Task 0 validation at early stop |\n"
              "|---|---|---|---|---|---|---|---|\n")
    out.write(_scores_row("SEQ", summary["seq"]))
    freeze = summary.get("freeze")
    if freeze:
        out.write(_scores_row(f"{freeze['method']} (recommended)", freeze))
    best = summary.get("best_k_validation")
    if best is not None and (not freeze or best != freeze["k"]):
        out.write(_scores_row(f"Freeze({best}) (best on validation)", summary.get("best_k_validation_scores")))
    out.write("\n")
    out.write("### Targets\n\n| target | value | threshold | pass |\n|---|---|---|---|\n")
    for t in summary["targets"]:
        out.write(f"| {t['target']} | {_f(t['value'])} | {_f(float(t['threshold']))} | "
                  f"{'PASS' if t['pass'] else 'FAIL'} |\n")
    diagnosis, recovery = summary["diagnosis"], summary["recovery"]
    out.write(f"\n## Diagnosis of SEQ at its dip (step {diagnosis['step']}): **{diagnosis['verdict']}**\n\n")
    out.write(f"{diagnosis['reason'][0].upper() + diagnosis['reason'][1:]}.\n\n")
    out.write(f"- Recovery ({recovery['steps']} steps at lr {recovery['lr']:g}, chosen on the validation people): "
              f"with n = {recovery['best_n']} examples about other people, Task 0 goes to {_f(recovery['acc'])} "
              f"(recovery fraction {_f(recovery['fraction'])}); the never-aligned control reaches "
              f"{_f(recovery['control_acc'])} (fraction {_f(recovery['control_fraction'])}).\n")
    rec = diagnosis["recommendation"]
    out.write(f"- Recommended freeze depth: **Freeze({rec['k']})** from {rec['source']} ({rec['strength']} "
              f"evidence). {rec['reasoning']}\n" if rec["k"] is not None else
              f"- No freeze depth recommended. {rec['reasoning']}\n")
    if best is not None:
        out.write(f"- The best k of the sweep on the validation people: Freeze({best}).\n")
    out.write("\nThe diagnosis tables are the `diagnosis_*.csv` files.\n\n")
    _views_section(out, summary.get("views"))
    out.write("## Figures\n\n")
    for name, path in figures.items():
        out.write(f"### {name.replace('_', ' ')}\n\n![{name}]({path})\n\n{FIGURE_CAPTIONS.get(name, '')}\n\n")
    timing = summary.get("timing", {})
    out.write("## Run\n\n" + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in timing.items()) + ".\n")
    return out.getvalue()


def _views_section(out: io.StringIO, views: Optional[Mapping[str, Any]]) -> None:
    """The paper's views in numbers (from ``summary.json``'s ``views``)."""
    if not views:
        return
    window = views["early_window"]
    out.write(f"## The paper's views of SEQ's run\n\nThe early window is steps {window['a']} → {window['b']} (the "
              f"paper's 100 → 150, scaled to SEQ's dip).\n\n")
    fmap = views.get("forgetting_map")
    if fmap:
        bottom = fmap.get("half_restored_by_bottom_through")
        out.write(f"- Forgetting map at step {fmap['step']} (Task 0 {_f(fmap['acc_step'])}, before Task 1 "
                  f"{_f(fmap['acc_before'])}): reverting **{layer_name(fmap['most_restoring_layer'], fmap['num_layers'])}** alone restores "
                  f"the most, {_f(fmap['most_restored'])} of the loss"
                  + (f"; reverting the bottom layers through {layer_name(bottom, fmap['num_layers'])} restores at least half.\n"
                     if bottom is not None else "; no bottom revert short of everything restores half.\n"))
    recovery = views.get("recovery_by_step")
    if recovery:
        parts = [f"step {v['step']}: {_f(v['fraction'])} (control {_f(v['control_fraction'])})"
                 for v in recovery["at"].values()]
        out.write(f"- Recovery fraction from SEQ's checkpoints (n = {recovery['n']}): " + "; ".join(parts) + ".\n")
    probe = views.get("probe_map")
    if probe:
        out.write(f"- Linear probes: the best layer decodes {_f(probe['best_layer_acc_first'])} of the attribute "
                  f"values at step {probe['first_step']} and {_f(probe['best_layer_acc_dip'])} at step "
                  f"{probe['dip_step']} (after block {probe['best_layer_dip']}).\n")
    fisher = views.get("fisher_angle") or {}
    if fisher.get("r") is not None:
        out.write(f"- Fisher against the update angle: Pearson r = {_f(fisher['r'])} (p = {_f(fisher['p'])}, "
                  f"{fisher['n']} weights); the paper: r = 0.054, p = 0.71.\n")
    out.write("\n")


def write_demo_outputs(out: Union[str, "os.PathLike[str]"], summary: Mapping[str, Any],
                       tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Write a demo run's tables (``<name>.csv``), figures, ``summary.json`` and ``report.md`` into ``out``.

    Returns:
        The summary as written (with its header; NaN as None).
    """
    out = Path(out)
    written = []
    for name, frame in tables.items():
        path = out / f"{name}.csv"
        write_csv(frame, path)
        written.append(path)
    figures = make_figures(out, out / "figures", tables=dict(tables))
    written += list(figures.values())
    summary = write_summary(out / "summary.json", "demo", summary, SCHEMA_VERSION)
    written.append(out / "summary.json")
    relative = {name: os.path.relpath(p, out) for name, p in figures.items()}
    atomic_write_text(os.fspath(out / "report.md"), demo_markdown(summary, relative))
    written.append(out / "report.md")
    for path in written:
        logger.debug("wrote %s", path)
    return summary
