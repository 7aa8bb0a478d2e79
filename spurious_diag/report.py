"""Report: write an audit's frames, summary and a readable ``report.md`` into ``--out``.

Every file is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, Mapping

import pandas as pd

from .outputs import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["write_csv", "write_audit_report", "audit_markdown", "format_value"]


def write_csv(frame: pd.DataFrame, path: str) -> None:
    """``frame`` as CSV at ``path``, atomically; floats in full (round-trip) precision."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def format_value(x: Any, spec: str = ".3g") -> str:
    """A table cell: ``–`` for None/NaN/Inf, ``yes``/``no`` for booleans, floats with ``spec``.

    >>> format_value(0.123456), format_value(0.2, ".3f"), format_value(float("nan")), format_value(True)
    ('0.123', '0.200', '–', 'yes')
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _layer_name(layer: int, num_layers: Any) -> str:
    if layer < 0:
        return "embeddings"
    if isinstance(num_layers, int) and layer == num_layers:
        return "head"
    return f"block {layer}"


def audit_markdown(summary: Mapping[str, Any]) -> str:
    """A short human-readable account of an audit summary: inputs, updates, per-layer table, rankings."""
    out = io.StringIO()
    out.write("# spurious_diag audit\n\n")
    out.write(f"spurious_diag {summary['package']['version']}, schema {summary['schema_version']}.\n\n")
    out.write("## Inputs\n\n| # | path | kind | tensors | blocks |\n|---|---|---|---|---|\n")
    for inp in summary["inputs"]:
        out.write(f"| {inp['index']} | `{os.path.basename(str(inp['path'])) or inp['path']}` | {inp['kind']} | "
                  f"{inp['tensors']} | {format_value(inp['num_layers'])} |\n")
    opts = summary["options"]
    mode = "base (every update from CKPT_0)" if opts["base"] else "chain (update i = CKPT_i − CKPT_{i−1})"
    out.write(f"\nMode: {mode}; rank {opts['rank']}; pairs: {opts['pairs']}; device {opts['device']}.\n")
    counts = summary["counts"]
    out.write(f"\n{counts['tensors']} tensors, {counts['update_rows']} update rows, {counts['pair_rows']} pair rows, "
              f"{counts['skipped_rows']} rows not ok (see the `status` column of `updates.csv`).\n")
    num_layers = summary["inputs"][0].get("num_layers")
    per_layer = summary["per_layer"]
    updates = [str(u["update"]) for u in summary["updates"]]
    pair_keys = sorted({k for entry in per_layer.values() for k in entry["angle_mean_deg"]})
    out.write("\n## Per layer\n\nMean RMS of the update per tensor (weight units), and the mean principal angle "
              "(degrees; 90 = orthogonal) and overlap between consecutive updates.\n\n")
    header = ["layer"] + [f"rms u{u}" for u in updates] + [f"angle {p}" for p in pair_keys] + [f"overlap {p}" for p in pair_keys]
    out.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    for layer in sorted(per_layer, key=int):
        entry = per_layer[layer]
        cells = [_layer_name(int(layer), num_layers)]
        cells += [format_value(entry["rms_mean"].get(u)) for u in updates]
        cells += [format_value(entry["angle_mean_deg"].get(p), ".4g") for p in pair_keys]
        cells += [format_value(entry["overlap"].get(p)) for p in pair_keys]
        out.write("| " + " | ".join(cells) + " |\n")
    out.write("\n## Rankings\n\n")
    for update, layers in summary["rankings"]["by_update_size"].items():
        names = ", ".join(_layer_name(x, num_layers) for x in layers[:5])
        out.write(f"- Largest update {update}: {names}\n")
    for pair, layers in summary["rankings"]["by_orthogonality"].items():
        names = ", ".join(_layer_name(x, num_layers) for x in layers[:5])
        out.write(f"- Most orthogonal updates {pair}: {names}\n")
    out.write("\nFiles: `updates.csv` (one row per update × tensor), `pairs.csv` (one row per pair of updates × "
              "2-D tensor), `summary.json`.\n")
    return out.getvalue()


def write_audit_report(result: Any, out_dir: str) -> list[str]:
    """Write ``updates.csv``, ``pairs.csv``, ``summary.json`` and ``report.md`` of an audit into ``out_dir``."""
    paths = {name: os.path.join(out_dir, name) for name in ("updates.csv", "pairs.csv", "summary.json", "report.md")}
    write_csv(result.updates, paths["updates.csv"])
    write_csv(result.pairs, paths["pairs.csv"])
    atomic_write_json(paths["summary.json"], result.summary)
    atomic_write_text(paths["report.md"], audit_markdown(result.summary))
    return list(paths.values())
