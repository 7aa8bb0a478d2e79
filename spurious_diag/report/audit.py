"""An audit's outputs: ``updates.csv``, ``pairs.csv``, ``summary.json`` and a readable ``report.md``."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING, Any, Mapping

from .._version import __version__
from ..outputs import atomic_write_text
from .common import format_value, layer_name, write_csv, write_summary

if TYPE_CHECKING:
    from ..updates.engine import AuditResult

__all__ = ["SCHEMA_VERSION", "audit_markdown", "write_audit_report"]

SCHEMA_VERSION = 1


def _update_label(update: Mapping[str, Any]) -> str:
    return f"u{update['update']} = CKPT_{update['to']} − CKPT_{update['from']}"


def audit_markdown(summary: Mapping[str, Any]) -> str:
    """A short human-readable account of an audit's summary (``AuditResult.summary``, or the
    ``summary.json`` it was written to): inputs, what was measured, the per-layer table, rankings."""
    out = io.StringIO()
    out.write("# spurious_diag audit\n\n")
    out.write(f"spurious_diag {__version__}, summary schema {SCHEMA_VERSION}.\n\n")
    out.write("## Inputs\n\n| # | path | kind | tensors | blocks |\n|---|---|---|---|---|\n")
    for inp in summary["inputs"]:
        out.write(f"| {inp['index']} | `{os.path.basename(str(inp['path'])) or inp['path']}` | {inp['kind']} | "
                  f"{inp['tensors']} | {format_value(inp['num_layers'])} |\n")
    opts = summary["options"]
    mode = "base (every update from CKPT_0)" if opts["base"] else "chain (update i = CKPT_i − CKPT_{i−1})"
    out.write(f"\nMode: {mode}; rank {opts['rank']}; pairs: {opts['pairs']}; device {opts['device']}.\n")
    updates = summary["updates"]
    out.write("Updates: " + "; ".join(_update_label(u) for u in updates) + ".\n")
    counts = summary["counts"]
    out.write(f"\n{counts['tensors']} tensors, {counts['update_rows']} update rows, {counts['pair_rows']} pair rows, "
              f"{counts['skipped_rows']} rows not ok (see the `status` column of `updates.csv`).\n")
    below = counts.get("below_noise_floor", 0)
    if opts.get("noise_floor", False):
        out.write(f"\nNoise floor: each update carries the rounding of the stored weights (`noise_fro`); {below} update "
                  f"rows have `snr` = ‖ΔW‖/noise_fro below {opts['min_snr']:g} or no direction above the noise edge, "
                  "and report no angle. Bases keep only directions above the noise edge.\n")
    else:
        out.write("\nNo noise floor (`--no-noise-floor`): the stored values were taken as exact, so rounding noise "
                  "counts as signal.\n")
    if summary.get("warnings"):
        out.write("\n## Warnings\n\n" + "".join(f"- {w}\n" for w in summary["warnings"]))
    num_layers = summary["inputs"][0].get("num_layers")
    per_layer = summary["per_layer"]
    ids = [str(u["update"]) for u in updates]
    pair_keys = sorted({k for entry in per_layer.values() for k in entry["angle_mean_deg"]})
    out.write("\n## Per layer\n\n")
    out.write("`rms uN`: the mean over the layer's tensors of update N's RMS, ‖ΔW‖_F/√numel, in weight units.")
    if pair_keys:
        out.write(" `angle a-b` and `overlap a-b`: the mean principal angle (degrees; 90 = orthogonal) and the "
                  "subspace overlap (1 = same directions, 0 = orthogonal) between consecutive updates a and b.")
    elif len(updates) == 1:
        out.write(" With two checkpoints there is one update, so there are no angles to measure: angles compare "
                  "two updates of the same weights. Pass three checkpoints (a chain base → after task A → after "
                  "task B compares task A's update with task B's), or `--base` with CKPT_0 and two fine-tunes of it.")
    flagged = [u for u in ids if any(entry.get("below_noise_floor", {}).get(u) for entry in per_layer.values())]
    if flagged:
        out.write(" `below floor uN`: tensors of update N below the noise floor, left out of the layer's means.")
    out.write("\n\n")
    header = (["layer"] + [f"rms u{u}" for u in ids] + [f"angle {p}" for p in pair_keys] + [f"overlap {p}" for p in pair_keys]
              + [f"below floor u{u}" for u in flagged])
    out.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    for layer in sorted(per_layer, key=int):
        entry = per_layer[layer]
        cells = [layer_name(int(layer), num_layers)]
        cells += [format_value(entry["rms_mean"].get(u)) for u in ids]
        cells += [format_value(entry["angle_mean_deg"].get(p), ".4g") for p in pair_keys]
        cells += [format_value(entry["overlap"].get(p)) for p in pair_keys]
        cells += [format_value(entry.get("below_noise_floor", {}).get(u, 0)) for u in flagged]
        out.write("| " + " | ".join(cells) + " |\n")
    out.write("\n## Rankings\n\n")
    for update, layers in summary["rankings"]["by_update_size"].items():
        names = ", ".join(layer_name(x, num_layers) for x in layers[:5])
        out.write(f"- Largest update {update}: {names}\n")
    for pair, layers in summary["rankings"]["by_orthogonality"].items():
        names = ", ".join(layer_name(x, num_layers) for x in layers[:5])
        out.write(f"- Most orthogonal updates {pair}: {names}\n")
    out.write("\nFiles: `updates.csv` (one row per update × tensor), `pairs.csv` (one row per pair of updates × "
              "2-D tensor), `summary.json`.\n")
    return out.getvalue()


def write_audit_report(result: "AuditResult", out_dir: str) -> list[str]:
    """Write ``updates.csv``, ``pairs.csv``, ``summary.json`` and ``report.md`` of an audit into ``out_dir``."""
    paths = {name: os.path.join(out_dir, name) for name in ("updates.csv", "pairs.csv", "summary.json", "report.md")}
    write_csv(result.updates, paths["updates.csv"])
    write_csv(result.pairs, paths["pairs.csv"])
    write_summary(paths["summary.json"], "audit", result.summary, SCHEMA_VERSION)
    atomic_write_text(paths["report.md"], audit_markdown(result.summary))
    return list(paths.values())
