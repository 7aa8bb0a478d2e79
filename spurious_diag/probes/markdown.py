"""``report.md`` of a :class:`~.verdict.Diagnosis`: verdict, rules, evidence, recommendation, tables."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd

from ..report import format_value

if TYPE_CHECKING:
    from .verdict import Diagnosis

__all__ = ["diagnosis_markdown", "frame_markdown"]

_TABLE_NOTES = {
    "accuracy": "Greedy exact match (mean over attributes) on held-out individuals.",
    "recovery": "Each n fine-tunes a fresh copy on n old-task examples about other individuals; "
                "fraction = (acc − acc_forgot) / (acc_before − acc_forgot), the control with the same denominator.",
    "format_overall": "Same facts, task format vs pretraining format; top1 = the truth ranks first in its "
                      "attribute's candidate pool.",
    "grafting": "Old/new-task accuracy of the post-Task-1 model with blocks grafted back from before; "
                "restored = share of the lost old-task accuracy brought back.",
    "residual_shift": "Last-prompt-token residual stream, before vs after, per layer (0 = embeddings).",
    "geometry": "Per block: Task-1 update size (mean RMS) and angle to the previous update (degrees).",
    "linear_probe": "Best layer per model and attribute (full table in linear_probe.csv).",
}


def frame_markdown(frame: pd.DataFrame, *, max_rows: int = 40) -> str:
    """A pipe table of ``frame`` (first ``max_rows`` rows)."""
    cols = list(frame.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(max_rows).itertuples(index=False):
        out.append("| " + " | ".join(format_value(v) for v in row) + " |")
    if len(frame) > max_rows:
        out.append(f"\n({len(frame) - max_rows} more rows in the CSV)")
    return "\n".join(out) + "\n"


def diagnosis_markdown(d: "Diagnosis") -> str:
    """The report of one diagnosis."""
    out = io.StringIO()
    out.write("# spurious_diag diagnosis\n\n")
    inputs = d.settings.get("inputs", {})
    out.write(f"Before: `{inputs.get('before')}`, after: `{inputs.get('after')}`, base (control): "
              f"`{inputs.get('base') or '—'}`.\n\n")
    out.write(f"## Verdict: **{d.verdict}**\n\n{d.reason[0].upper() + d.reason[1:]}.\n\n")
    out.write("| rule | supports | status | detail |\n|---|---|---|---|\n")
    for r in d.rules:
        out.write(f"| `{r.name}` | {r.supports} | {r.status} | {r.detail} |\n")
    out.write("\nRules (thresholds in `summary.json` → `settings.rules`): spurious when the old task dropped and every "
              "applicable knowledge probe (recovery against its control, pretraining-format accuracy) says the facts "
              "survive; real when every one says they are gone; inconclusive otherwise.\n")
    rec = d.recommendation
    out.write("\n## Recommended freeze depth\n\n")
    if rec.k is None:
        out.write("None. ")
    else:
        blocks = {0: "", 1: " + block 0"}.get(rec.k, f" + blocks 0..{rec.k - 1}")
        out.write(f"**Freeze({rec.k})**: the embeddings{blocks}" + (" only" if rec.k == 0 else ""))
        out.write(f" (from {rec.source}; {rec.strength} evidence). ")
    out.write(rec.reasoning + "\n")
    out.write("\n## Evidence\n\n| quantity | value |\n|---|---|\n")
    for key, value in d.evidence.items():
        out.write(f"| {key} | {format_value(value)} |\n")
    if d.skipped:
        out.write("\n## Skipped\n\n")
        for probe, why in d.skipped.items():
            out.write(f"- {probe}: {why}\n")
    for name in ("accuracy", "recovery", "format_overall", "grafting", "residual_shift", "geometry", "linear_probe"):
        frame = d.frames.get(name)
        if frame is None or frame.empty:
            continue
        if name == "linear_probe":
            frame = frame.loc[frame.groupby(["model", "attribute"], sort=False)["acc"].idxmax()]
        out.write(f"\n## {name.replace('_', ' ').capitalize()}\n\n{_TABLE_NOTES.get(name, '')}\n\n")
        out.write(frame_markdown(frame))
    out.write("\nTables: " + ", ".join(f"`{n}.csv`" for n in sorted(d.frames)) + "; `summary.json`.\n")
    return out.getvalue()
