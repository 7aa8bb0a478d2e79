"""A run diagnosis's outputs (``spurious-diag diagnose BEFORE RUN_DIR``): the maps as CSV, their
figures, ``summary.json`` and ``report.md``."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional

import matplotlib.pyplot as plt

from ..outputs import atomic_path, atomic_write_text
from ..plots.forgetting import forgetting_map_heatmap, probe_map_heatmap, recovery_by_step_plot
from .common import format_value, json_safe, layer_name, write_csv, write_summary

if TYPE_CHECKING:
    from ..probes.run_diagnosis import RunDiagnosis

__all__ = ["SCHEMA_VERSION", "run_diagnosis_markdown", "write_run_diagnosis"]

SCHEMA_VERSION = 1

# A single layer's revert restoring less than this is reported as restoring nothing in particular.
_NOTHING = 0.1

_CAPTIONS = {
    "forgetting_map": "Share of the lost old-task accuracy restored by putting one layer back to its value before "
                      "the new task, per checkpoint (blank: under 5 points lost).",
    "forgetting_map_bottom": "The same with the bottom layers reverted together, from the embeddings up to the row.",
    "probe_map": "Linear-probe accuracy of the old task's values per layer and checkpoint (mean over attributes).",
    "recovery_by_step": "Recovery fraction from each checkpoint (solid) and the never-aligned control (dashed).",
}


def _figures(d: "RunDiagnosis", out: Path, dip: Optional[int]) -> dict[str, str]:
    """Draw the run's figures into ``out/figures``; returns name → path relative to ``out``."""
    draw = {"forgetting_map": lambda: forgetting_map_heatmap(d.frames["forgetting_map"], arm="single", dip_step=dip),
            "forgetting_map_bottom": lambda: forgetting_map_heatmap(d.frames["forgetting_map"], arm="bottom",
                                                                    dip_step=dip)}
    if "probe_map" in d.frames and not d.frames["probe_map"].empty:
        draw["probe_map"] = lambda: probe_map_heatmap(d.frames["probe_map"], dip_step=dip)
    if "recovery_by_step" in d.frames and not d.frames["recovery_by_step"].empty:
        draw["recovery_by_step"] = lambda: recovery_by_step_plot(d.frames["recovery_by_step"], dip_step=dip)
    (out / "figures").mkdir(exist_ok=True)
    written = {}
    for name, make in draw.items():
        fig = make()
        path = out / "figures" / f"{name}.png"
        with atomic_path(os.fspath(path)) as tmp:
            fig.savefig(tmp, dpi=150, format="png", bbox_inches="tight")
        plt.close(fig)
        written[name] = os.path.relpath(path, out)
    return written


def run_diagnosis_markdown(d: "RunDiagnosis", figures: Mapping[str, str]) -> str:
    """The ``report.md`` of a run diagnosis: the dip, what restores it, the recovery, the figures."""
    s, inputs = d.summary, d.settings["inputs"]
    f = lambda x: format_value(x, ".3f")  # noqa: E731
    out = io.StringIO()
    out.write("# spurious_diag diagnosis of a run\n\n")
    out.write(f"Before: `{inputs['before']}`; run: `{inputs['run_dir']}` ({len(d.settings['steps'])} checkpoints, "
              f"steps {d.settings['steps'][0]}–{d.settings['steps'][-1]}, every {d.settings['every']}); base "
              f"(control): `{inputs.get('base') or '—'}`. Old task on {d.settings['split']['held_out_records']} "
              f"held-out records: {f(s['acc_before'])} before the new task.\n\n")
    out.write(f"- Lowest old-task accuracy: {f(s['acc_dip'])} at step {s['dip_step']}; {f(s['acc_last'])} at the "
              f"last checkpoint (step {s['last_step']}).\n")
    if "most_restoring_layer" in s:
        half = s.get("half_restored_by_bottom_through")
        single = (f"reverting **{layer_name(s['most_restoring_layer'], s['num_layers'])}** alone restores the most: "
                  f"{f(s['most_restored'])} of the loss" if s["most_restored"] >= _NOTHING else
                  f"no layer alone restores more than {f(s['most_restored'])} of the loss")
        out.write(f"- At step {s['dip_step']}, {single}. "
                  + (f"Reverting the bottom layers through {layer_name(half, s['num_layers'])} restores at least "
                     f"half.\n" if half is not None else "No bottom revert short of everything restores half.\n"))
    recovery = s.get("recovery")
    if recovery:
        for name in ("dip", "last"):
            if name in recovery:
                r = recovery[name]
                out.write(f"- Recovery with n = {recovery['n']} from step {r['step']}: fraction {f(r['fraction'])} "
                          f"(never-aligned control {f(r['control_fraction'])}).\n")
    if d.skipped:
        out.write("- Not run: " + "; ".join(f"{k} ({v})" for k, v in d.skipped.items()) + ".\n")
    out.write("\n")
    for name, path in figures.items():
        out.write(f"## {name.replace('_', ' ')}\n\n![{name}]({path})\n\n{_CAPTIONS.get(name, '')}\n\n")
    out.write("Tables: " + ", ".join(f"`{n}.csv`" for n in sorted(d.frames)) + "; `summary.json`.\n")
    return out.getvalue()


def write_run_diagnosis(d: "RunDiagnosis", out_dir: "os.PathLike[str] | str",
                        inputs: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Write the maps (``forgetting_map.csv``, ``probe_map.csv``, ``recovery_by_step.csv``), their
    figures, ``summary.json`` and ``report.md`` into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    written = []
    for name, frame in sorted(d.frames.items()):
        path = out / f"{name}.csv"
        write_csv(frame, path)
        written.append(os.fspath(path))
    figures = _figures(d, out, d.summary.get("dip_step"))
    written += [os.fspath(out / p) for p in figures.values()]
    settings = dict(d.settings)
    settings["inputs"] = {**settings["inputs"], **(inputs or {})}
    content = json_safe({"summary": d.summary, "skipped": d.skipped, "settings": settings,
                         "tables": sorted(d.frames)})
    write_summary(out / "summary.json", "run_diagnosis", content, SCHEMA_VERSION)
    written.append(os.fspath(out / "summary.json"))
    atomic_write_text(os.fspath(out / "report.md"), run_diagnosis_markdown(d, figures))
    written.append(os.fspath(out / "report.md"))
    return written
