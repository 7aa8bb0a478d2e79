"""The audit's small summary: inputs, options, counts, and per-layer aggregates with rankings.

Plain Python data (NaN where a mean is undefined); ``report.audit`` adds the header (schema
version, package version, kind) and writes it as JSON, NaN as null.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import pandas as pd

from ..io.adapter import LoraAdapter
from ..io.checkpoint import Checkpoint
from .options import AuditOptions
from .plan import Source, UpdatePlan

__all__ = ["audit_summary", "per_layer_table", "noise_floor_warnings", "layer_ranges"]


def _input_facts(i: int, source: Source) -> dict[str, Any]:
    ckpt = source.checkpoint if isinstance(source, LoraAdapter) else source
    assert isinstance(ckpt, Checkpoint)
    return {
        "index": i,
        "path": ckpt.path,
        "kind": "lora_adapter" if isinstance(source, LoraAdapter) else ckpt.format,
        "tensors": len(ckpt),
        "bytes": ckpt.nbytes(),
        "header_sha256": ckpt.header_hash(),
        "num_layers": ckpt.num_layers,
    }


def per_layer_table(updates: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per (layer, update) with the mean ``rms`` and ``rel`` of its tensors, and per
    (layer, pair of consecutive updates) the mean angle and overlap of its 2-D tensors.

    Columns: ``layer``, ``update``, ``rms_mean``, ``rel_mean``, ``pair``, ``angle_mean_deg``, ``overlap``,
    ``overlap_random`` (pair columns empty on size rows and the reverse).
    """
    ok = updates[(updates["status"] == "ok") & updates["layer"].notna()]
    sizes = ok.groupby(["layer", "update"], as_index=False).agg(rms_mean=("rms", "mean"), rel_mean=("rel", "mean"))
    good_pairs = pairs[(pairs["status"] == "ok") & pairs["layer"].notna() & (pairs["update_b"] == pairs["update_a"] + 1)]
    angles = good_pairs.groupby(["layer", "update_a", "update_b"], as_index=False).agg(
        angle_mean_deg=("angle_mean_deg", "mean"), overlap=("overlap", "mean"), overlap_random=("overlap_random", "mean")
    )
    angles["pair"] = angles["update_a"].astype(str) + "-" + angles["update_b"].astype(str)
    return pd.concat([sizes, angles.drop(columns=["update_a", "update_b"])], ignore_index=True)


def audit_summary(updates: pd.DataFrame, pairs: pd.DataFrame, sources: Sequence[Source],
                  plans: Sequence[UpdatePlan], options: AuditOptions) -> dict[str, Any]:
    """The content of an audit's ``summary.json``: inputs, options, updates, counts, per layer (with the
    rows below the rounding-noise floor, per update), rankings and warnings."""
    opts = asdict(options)
    table = per_layer_table(updates, pairs)
    per_layer: dict[str, dict[str, Any]] = {}
    for _, row in table.iterrows():
        entry = per_layer.setdefault(str(int(row["layer"])), {"rms_mean": {}, "rel_mean": {}, "angle_mean_deg": {}, "overlap": {}})
        if pd.notna(row.get("update")):
            entry["rms_mean"][str(int(row["update"]))] = float(row["rms_mean"])
            entry["rel_mean"][str(int(row["update"]))] = float(row["rel_mean"])
        else:
            entry["angle_mean_deg"][row["pair"]] = float(row["angle_mean_deg"])
            entry["overlap"][row["pair"]] = float(row["overlap"])
    rankings: dict[str, dict[str, list[int]]] = {"by_update_size": {}, "by_orthogonality": {}}
    sizes = table[table["update"].notna()]
    for update, group in sizes.groupby("update"):
        rankings["by_update_size"][str(int(update))] = [int(x) for x in group.sort_values("rms_mean", ascending=False)["layer"]]
    angles = table[table["update"].isna()]
    for pair, group in angles.groupby("pair"):
        rankings["by_orthogonality"][str(pair)] = [int(x) for x in group.sort_values("angle_mean_deg", ascending=False)["layer"]]
    status = updates["status"].fillna("")
    below = status.str.startswith("below noise floor")
    for (layer, update), count in updates[below & updates["layer"].notna()].groupby(["layer", "update"]).size().items():
        entry = per_layer.setdefault(str(int(layer)), {"rms_mean": {}, "rel_mean": {}, "angle_mean_deg": {}, "overlap": {}})
        entry.setdefault("below_noise_floor", {})[str(int(update))] = int(count)
    return {
        "inputs": [_input_facts(i, s) for i, s in enumerate(sources)],
        "options": opts,
        "updates": [{"update": p.index, "from": p.source, "to": p.target, "factored": p.factored} for p in plans],
        "counts": {
            "tensors": int(updates["name"].nunique()),
            "update_rows": int(len(updates)),
            "pair_rows": int(len(pairs)),
            "skipped_rows": int((~status.isin(["ok"])).sum()),
            "below_noise_floor": int(below.sum()),
        },
        "per_layer": per_layer,
        "rankings": rankings,
        "warnings": noise_floor_warnings(updates),
    }


def noise_floor_warnings(updates: pd.DataFrame) -> list[str]:
    """One sentence per update with rows below the rounding-noise floor: how many, where, and what the
    per-layer numbers then rest on (those rows are left out of the means and rankings); then, once,
    what would measure them."""
    status = updates["status"].fillna("")
    below = status.str.startswith("below noise floor")
    measured = updates[below | (status == "ok")]
    warnings = []
    for update, rows in measured.groupby("update"):
        flagged = rows[rows["status"].str.startswith("below noise floor")]
        if flagged.empty:
            continue
        layers = sorted({int(x) for x in flagged["layer"].dropna()})
        kept = rows[rows["status"] == "ok"]
        empty = sorted(set(layers) - {int(x) for x in kept["layer"].dropna()})
        sentence = (f"update {int(update)}: {len(flagged)} of {len(rows)} tensor rows are below the rounding-noise "
                    f"floor (in layers {layer_ranges(layers)}); the per-layer sizes, angles and rankings leave them "
                    f"out and rest on the other {len(kept)}")
        if empty:
            sentence += (f"; layers {layer_ranges(empty)} have none left, so no conclusion about them "
                         "(e.g. 'orthogonal') is supported")
        warnings.append(sentence + ".")
    if warnings:
        warnings.append("To measure those updates: audit float32 copies of the checkpoints if the run kept them, or "
                        "checkpoints further apart (larger updates); a lower --min-snr reports them at the cost of "
                        "accuracy (README, 'The noise floor').")
    return warnings


def layer_ranges(layers: list[int]) -> str:
    """Sorted layer indices as runs: ``[-1, 0, 1, 2, 5, 7, 8]`` → ``-1..2, 5, 7..8``.

    >>> layer_ranges([-1, 0, 1, 2, 5, 7, 8]), layer_ranges([3]), layer_ranges([])
    ('-1..2, 5, 7..8', '3', '')
    """
    runs: list[list[int]] = []
    for layer in layers:
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs)
