"""Recommend a freeze depth k (Freeze(k) = embeddings + blocks 0..k−1, DESIGN.md §4).

Two sources of evidence:

- **Grafting** (needs old-task data; the stronger evidence). With acc_before / acc_after the
  old-task accuracy before / after Task 1 and g(k) the post-Task-1 model's accuracy with blocks
  [0, k) grafted back, the restored fraction is r(k) = (g(k) − acc_after) / (acc_before −
  acc_after). k_graft = 0 when the embeddings-only graft already restores ≥ ``restore`` (0.5),
  else the smallest k ≥ 1 with r(k) ≥ ``restore``. When only k = L (every block) restores it, the
  old task needs the whole stack: no bottom depth protects it, and grafting recommends nothing.
- **Geometry** (checkpoints alone suffice; weaker). From an audit summary (``per_layer``): the
  size of the last update (Task 1, mean RMS per tensor) per block, and, when the audit has an
  earlier update, the mean principal angle between the last two updates (Task 0 vs Task 1)
  per block. A block is *flagged* when its Task-1 update is at least the median size over the
  blocks and (with angles) at least the median angle. k_geometry = the number of consecutive
  flagged blocks from block 0 (so 0 when block 0 is not flagged), capped at ⌊L/2⌋: the pilot
  found that freezing more slows Task 1 (DESIGN.md §5).

The recommendation is k_graft when grafting gives one, else k_geometry, else none; every k is
capped at L − 1 so that Task 1 keeps a block to learn with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import pandas as pd

__all__ = ["FreezeRecommendation", "restored_fractions", "depth_from_grafting", "depth_from_geometry",
           "recommend_freeze_depth", "geometry_table"]


@dataclass(frozen=True)
class FreezeRecommendation:
    """A freeze depth and why.

    Attributes:
        k: blocks to freeze with the embeddings (Freeze(k)); None when nothing supports a depth.
        source: ``grafting``, ``geometry`` or ``none``.
        strength: ``stronger`` (grafting on old-task data), ``weaker`` (geometry only) or ``none``.
        k_grafting, k_geometry: what each source alone says (None when unavailable).
        reasoning: sentences with the numbers.
    """

    k: Optional[int]
    source: str
    strength: str
    k_grafting: Optional[int]
    k_geometry: Optional[int]
    reasoning: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def restored_fractions(grafting: pd.DataFrame, acc_before: float, acc_after: float) -> pd.DataFrame:
    """``grafting`` (:func:`.grafting.grafting_curve`) with a ``restored`` column r (NaN when
    nothing was forgotten or the row was skipped)."""
    out = grafting.copy()
    gap = acc_before - acc_after
    out["restored"] = (out["old_acc"] - acc_after) / gap if gap > 1e-9 else math.nan
    return out


def depth_from_grafting(grafting: pd.DataFrame, acc_before: float, acc_after: float, num_layers: int, *,
                        restore: float = 0.5) -> tuple[Optional[int], str]:
    """k_graft and a sentence (module docstring)."""
    table = restored_fractions(grafting, acc_before, acc_after)
    ok = table[table["status"] == "ok"]
    if ok["restored"].isna().all():
        return None, "grafting: nothing forgotten, so nothing to restore"
    emb = ok[ok["arm"] == "embeddings"]
    if len(emb) and float(emb["restored"].iloc[0]) >= restore:
        return 0, (f"grafting: the embeddings alone restore {float(emb['restored'].iloc[0]):.0%} of the lost old-task "
                   f"accuracy (≥ {restore:.0%})")
    bottom = ok[(ok["arm"] == "bottom") & (ok["k"] >= 1)].sort_values("k")
    hits = bottom[bottom["restored"] >= restore]
    curve = ", ".join(f"k={int(r.k)}: {r.restored:.0%}" for r in bottom.itertuples())
    if hits.empty:
        return None, f"grafting: no bottom graft restores {restore:.0%} of the old task ({curve})"
    k = int(hits["k"].iloc[0])
    if k >= num_layers:
        return None, (f"grafting: only grafting all {num_layers} blocks restores {restore:.0%} ({curve}); the old task "
                      "needs the whole stack, so no bottom freeze depth protects it")
    return k, (f"grafting: putting back {_bottom_blocks(k)} from before restores ≥ {restore:.0%} of the lost old-task "
               f"accuracy ({curve})")


def _bottom_blocks(k: int) -> str:
    """``block 0`` or ``blocks 0–{k−1}``.

    >>> _bottom_blocks(1), _bottom_blocks(3)
    ('block 0', 'blocks 0–2')
    """
    return "block 0" if k == 1 else f"blocks 0–{k - 1}"


def geometry_table(audit_summary: Mapping[str, Any], num_layers: int) -> pd.DataFrame:
    """Per block (0..L−1): ``layer``, ``rms`` (last update), ``angle_deg`` (last pair of consecutive
    updates, NaN without one), from an audit summary's ``per_layer``."""
    per_layer = audit_summary.get("per_layer", {})
    updates = sorted({int(u) for entry in per_layer.values() for u in entry.get("rms_mean", {})})
    last = str(updates[-1]) if updates else None
    pair = f"{updates[-2]}-{updates[-1]}" if len(updates) >= 2 else None
    rows = []
    for layer in range(num_layers):
        entry = per_layer.get(str(layer), {})
        rms = entry.get("rms_mean", {}).get(last) if last else None
        angle = entry.get("angle_mean_deg", {}).get(pair) if pair else None
        rows.append({"layer": layer, "rms": math.nan if rms is None else float(rms),
                     "angle_deg": math.nan if angle is None else float(angle)})
    return pd.DataFrame(rows, columns=["layer", "rms", "angle_deg"])


def depth_from_geometry(audit_summary: Mapping[str, Any], num_layers: int) -> tuple[Optional[int], str, pd.DataFrame]:
    """k_geometry, a sentence, and the per-block table with a ``flagged`` column."""
    table = geometry_table(audit_summary, num_layers)
    if table["rms"].isna().all():
        return None, "geometry: the audit has no per-block update sizes", table
    use_angles = not table["angle_deg"].isna().all()
    flagged = table["rms"] >= table["rms"].median()
    if use_angles:
        flagged &= table["angle_deg"] >= table["angle_deg"].median()
    table["flagged"] = flagged.fillna(False)
    k = 0
    for value in table["flagged"]:
        if not value:
            break
        k += 1
    cap = max(num_layers // 2, 0)
    capped = min(k, cap)
    what = "largest and most orthogonal" if use_angles else "largest (no earlier update: sizes only)"
    flagged_names = [int(x) for x in table.loc[table["flagged"], "layer"]]
    run = (f"so {_bottom_blocks(k)}, counted up from the bottom, qualify" if k else
           "block 0 is not among them, so no bottom block qualifies")
    sentence = f"geometry: the Task-1 update is {what} in blocks {flagged_names or 'none'}; {run}"
    if capped < k:
        sentence += f", capped at ⌊L/2⌋ = {cap}"
    return capped, sentence, table


def recommend_freeze_depth(
    num_layers: int,
    *,
    grafting: Optional[pd.DataFrame] = None,
    acc_before: Optional[float] = None,
    acc_after: Optional[float] = None,
    audit_summary: Optional[Mapping[str, Any]] = None,
    restore: float = 0.5,
) -> FreezeRecommendation:
    """Combine grafting and geometry into one depth (module docstring)."""
    k_graft: Optional[int] = None
    k_geo: Optional[int] = None
    reasons: list[str] = []
    if grafting is not None and acc_before is not None and acc_after is not None:
        k_graft, sentence = depth_from_grafting(grafting, acc_before, acc_after, num_layers, restore=restore)
        reasons.append(sentence + ".")
    if audit_summary is not None:
        k_geo, sentence, _ = depth_from_geometry(audit_summary, num_layers)
        reasons.append(sentence + ".")
    cap = max(num_layers - 1, 0)
    if k_graft is not None:
        k = min(k_graft, cap)
        if k_geo is not None:
            reasons.append("Geometry agrees." if k_geo == k else f"Geometry alone would say {k_geo}; grafting on "
                                                                   "old-task data is the stronger evidence.")
        if k > num_layers // 2:
            reasons.append("Freezing more than half the blocks slowed Task 1 in the pilot: compare at matched Task 1 "
                           "accuracy.")
        return FreezeRecommendation(k, "grafting", "stronger", k_graft, k_geo, " ".join(reasons))
    if k_geo is not None:
        ran_grafting = grafting is not None and acc_before is not None and acc_after is not None
        reasons.append(("Grafting supports no bottom depth, so" if ran_grafting else
                        "Without a grafting result on old-task data")
                       + " this rests on update geometry alone: weaker evidence, check it on held-out old-task data.")
        return FreezeRecommendation(min(k_geo, cap), "geometry", "weaker", k_graft, k_geo, " ".join(reasons))
    reasons.append("No grafting result and no audit: no depth recommended.")
    return FreezeRecommendation(None, "none", "none", k_graft, k_geo, " ".join(reasons))
