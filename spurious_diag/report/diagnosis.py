"""A diagnosis's outputs: one CSV per probe table, ``summary.json`` and a readable ``report.md``."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, Mapping, Optional

from ..outputs import atomic_write_text
from .common import format_value, frame_markdown, json_safe, write_csv, write_summary

if TYPE_CHECKING:
    from ..probes.diagnosis import Diagnosis

__all__ = ["SCHEMA_VERSION", "diagnosis_content", "diagnosis_markdown", "write_diagnosis_report"]

SCHEMA_VERSION = 1

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


def diagnosis_content(d: "Diagnosis", *, include_frames: bool = False) -> dict[str, Any]:
    """What ``summary.json`` says of a diagnosis (without its header); tables as lists of rows
    with ``include_frames``."""
    out: dict[str, Any] = {
        "verdict": d.verdict,
        "reason": d.reason,
        "rules_fired": d.rules_fired,
        "rules": [r.to_dict() for r in d.rules],
        "evidence": dict(d.evidence),
        "recommendation": d.recommendation.to_dict(),
        "skipped": dict(d.skipped),
        "settings": d.settings,
        "tables": sorted(d.frames),
    }
    if include_frames:
        out["frames"] = {name: frame.to_dict("records") for name, frame in d.frames.items()}
    return json_safe(out)


def diagnosis_markdown(d: "Diagnosis") -> str:
    """The ``report.md`` of one diagnosis: verdict, rules, recommendation, evidence, tables."""
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
    seconds = d.settings.get("seconds") or {}
    if seconds:
        out.write("\nWall time per probe: " + ", ".join(f"{probe} {t:.1f} s" for probe, t in seconds.items()) + ".\n")
    return out.getvalue()


def write_diagnosis_report(d: "Diagnosis", out_dir: str, inputs: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Write one CSV per probe table (``accuracy.csv``, ``recovery.csv``, ...), ``summary.json`` and
    ``report.md`` of ``d`` into ``out_dir``; ``inputs`` (e.g. the paths given) go into
    ``settings.inputs``. Returns the paths written."""
    written = []
    for name, frame in sorted(d.frames.items()):
        path = os.path.join(out_dir, f"{name}.csv")
        write_csv(frame, path)
        written.append(path)
    content = diagnosis_content(d)
    content["settings"]["inputs"].update(inputs or {})
    path = os.path.join(out_dir, "summary.json")
    write_summary(path, "diagnosis", content, SCHEMA_VERSION)
    written.append(path)
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, diagnosis_markdown(d))
    written.append(path)
    return written
