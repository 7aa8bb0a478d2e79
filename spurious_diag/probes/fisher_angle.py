"""EWC vs orthogonality (the paper's §5.1; DESIGN.md §2c): does EWC protect the weights the
new task's update actually interferes through?

EWC anchors each weight in proportion to the old task's diagonal Fisher. If forgetting came
from the new update sharing directions with the old task's update (a small angle between them),
the weight components with a large Fisher should be those with small angles. The paper found
no relation (Pearson r = 0.054, p = 0.71, over weight components): EWC protects the wrong
weights. Here, per weight component (a 2-D tensor, or one part of a fused one, as in an
audit's ``pairs`` frame):

- ``fisher_mean``: the mean of the old task's diagonal Fisher over the tensor's elements
  (:func:`fisher_by_tensor`; e.g. ``FisherDiagonal.fisher`` from
  :func:`spurious_diag.continual.ewc.diagonal_fisher`, computed at the end of Task 0);
- ``angle_deg``: the audit's mean principal angle (or ``paper_angle_mean_deg``, the paper's
  one-sided angle, with ``--paper-angles``) between two updates, e.g. the Task-0 update and the
  early Task-1 window;

and :func:`fisher_angle_correlation` is the Pearson correlation over the components with both.
A fused tensor (GPT-NeoX ``query_key_value``, Phi-3 ``qkv_proj``) is audited per part but its
Fisher is not split: every part gets the whole tensor's Fisher mean.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional

import pandas as pd
import torch
from scipy import stats

from ..errors import InvalidDataError, UsageError
from ..io.layer_map import parse_param_name

__all__ = ["FISHER_COLUMNS", "FISHER_ANGLE_COLUMNS", "fisher_by_tensor", "fisher_angle_table",
           "fisher_angle_correlation"]

logger = logging.getLogger(__name__)

FISHER_COLUMNS = ["name", "layer", "module", "numel", "fisher_mean"]
FISHER_ANGLE_COLUMNS = ["name", "part", "layer", "module", "fisher_mean", "angle_deg", "status"]


def fisher_by_tensor(fisher: Mapping[str, torch.Tensor], num_layers: Optional[int] = None) -> pd.DataFrame:
    """The mean diagonal Fisher of each tensor.

    Args:
        fisher: parameter name → diagonal Fisher (same shape as the parameter), e.g.
            ``FisherDiagonal.fisher`` (a ``FisherDiagonal`` itself is read through its ``.fisher``).
        num_layers: the model's block count L, to number the final norm and LM head (layer L);
            without it their layer is missing (:func:`~spurious_diag.io.layer_map.parse_param_name`).

    Returns:
        One row per tensor, in the mapping's order, :data:`FISHER_COLUMNS`: ``layer`` (nullable
        integer: −1 embeddings, 0..L−1 blocks, L final norm / head), ``module`` (normalized),
        ``numel``, ``fisher_mean`` (mean over the elements, accumulated in float64; NaN for an
        empty tensor).

    >>> fisher_by_tensor({"model.layers.0.mlp.up_proj.weight": torch.tensor([[1.0, 2.0], [3.0, 6.0]])})
                                    name  layer       module  numel  fisher_mean
    0  model.layers.0.mlp.up_proj.weight      0  mlp.up_proj      4          3.0
    """
    tensors: Mapping[str, torch.Tensor] = getattr(fisher, "fisher", fisher)
    rows = []
    for name, f in tensors.items():
        info = parse_param_name(name, num_layers)
        numel = f.numel()
        rows.append({"name": name, "layer": info.layer, "module": info.module, "numel": numel,
                     "fisher_mean": float(f.detach().double().mean()) if numel else math.nan})
    frame = pd.DataFrame(rows, columns=FISHER_COLUMNS)
    frame["layer"] = frame["layer"].astype("Int64")
    return frame


def _angle_status(pair_status: Any, angle: float, fisher_mean: float, has_fisher: bool, column: str) -> str:
    if not has_fisher:
        return "no Fisher for this tensor"
    if not math.isfinite(fisher_mean):
        return "Fisher mean not finite"
    if not math.isfinite(angle):
        why = str(pair_status) if isinstance(pair_status, str) and pair_status and pair_status != "ok" else "NaN"
        return f"no {column}: {why}"
    return "ok"


def fisher_angle_table(fisher_frame: pd.DataFrame, pairs: pd.DataFrame, *, update_a: int, update_b: int,
                       angle: str = "angle_mean_deg") -> pd.DataFrame:
    """Fisher mean and update angle per weight component, joined on the tensor name.

    Args:
        fisher_frame: :func:`fisher_by_tensor` of the old task's Fisher.
        pairs: an audit's ``pairs`` frame (or ``pairs.csv`` read back: a missing ``part`` is
            read as a whole tensor).
        update_a, update_b: the pair of updates whose angle is used (as in the ``update_a`` /
            ``update_b`` columns; the order matters for one-sided angles).
        angle: the angle column, degrees: ``angle_mean_deg`` (default), ``angle_min_deg``,
            ``angle_mean_deg_right``, ``one_sided_mean_deg`` or ``paper_angle_mean_deg``.

    Returns:
        One row per pair row of (update_a, update_b), in the pairs' order,
        :data:`FISHER_ANGLE_COLUMNS`. ``layer`` and ``module`` are the pairs' (a fused tensor's
        part has its own module); ``fisher_mean`` is the whole tensor's. No row is dropped:
        ``status`` is ``ok`` when both values are finite, else why not (``no Fisher for this
        tensor``, ``Fisher mean not finite``, or ``no <angle>: <the pair's status>``), and
        :func:`fisher_angle_correlation` uses the ``ok`` rows only. Fisher tensors with no pair
        row (1-D tensors are not compared) are not components; their count is logged.

    Raises:
        UsageError: ``angle`` is not a column of ``pairs``, or no pair row has these updates.
        InvalidDataError: a frame lacks a needed column.
    """
    for frame, what, needed in ((fisher_frame, "fisher_frame", ("name", "fisher_mean")),
                                (pairs, "pairs", ("update_a", "update_b", "name"))):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise InvalidDataError(f"{what} lacks the columns {missing}")
    if angle not in pairs.columns:
        known = [c for c in pairs.columns if "angle" in c]
        raise UsageError(f"no angle column {angle!r} in pairs (angle columns there: {known})")
    chosen = pairs[(pairs["update_a"] == update_a) & (pairs["update_b"] == update_b)]
    if chosen.empty:
        available = sorted({(int(a), int(b)) for a, b in zip(pairs["update_a"], pairs["update_b"])})
        raise UsageError(f"no pair rows for updates ({update_a}, {update_b}); pairs there: {available}")
    by_name = fisher_frame.drop_duplicates("name").set_index("name")
    rows = []
    for _, row in chosen.iterrows():
        name = row["name"]
        has_fisher = name in by_name.index
        fisher_mean = float(by_name.at[name, "fisher_mean"]) if has_fisher else math.nan
        value = row[angle]
        angle_deg = float(value) if value is not None and not pd.isna(value) else math.nan
        part = row.get("part", "")
        layer = row.get("layer")
        if (layer is None or pd.isna(layer)) and has_fisher and "layer" in by_name.columns:
            layer = by_name.at[name, "layer"]
        module = row.get("module")
        if (module is None or pd.isna(module)) and has_fisher and "module" in by_name.columns:
            module = by_name.at[name, "module"]
        rows.append({"name": name, "part": "" if part is None or pd.isna(part) else str(part),
                     "layer": None if layer is None or pd.isna(layer) else int(layer), "module": module,
                     "fisher_mean": fisher_mean, "angle_deg": angle_deg,
                     "status": _angle_status(row.get("status"), angle_deg, fisher_mean, has_fisher, angle)})
    table = pd.DataFrame(rows, columns=FISHER_ANGLE_COLUMNS)
    table["layer"] = table["layer"].astype("Int64")
    unpaired = len(set(by_name.index) - set(chosen["name"]))
    n_ok = int((table["status"] == "ok").sum())
    logger.info("Fisher vs %s of updates (%d, %d): %d components, %d with both values; %d Fisher tensors "
                "have no pair row", angle, update_a, update_b, len(table), n_ok, unpaired)
    return table


def fisher_angle_correlation(table: pd.DataFrame) -> dict[str, Any]:
    """Pearson correlation between ``fisher_mean`` and ``angle_deg`` over the usable components.

    Args:
        table: :func:`fisher_angle_table`; only rows whose ``status`` is ``ok`` (when the column
            exists) and whose two values are finite are used.

    Returns:
        ``r`` and ``p`` (two-sided, :func:`scipy.stats.pearsonr`), ``n`` (components used) and
        ``reason``: None when r is defined, else why r and p are NaN (fewer than 3 components,
        or a column constant over them).

    >>> t = pd.DataFrame({"fisher_mean": [1.0, 2.0, 3.0], "angle_deg": [10.0, 20.0, 30.0], "status": "ok"})
    >>> c = fisher_angle_correlation(t)
    >>> round(c["r"], 12), c["n"], c["reason"]
    (1.0, 3, None)
    """
    rows = table[table["status"] == "ok"] if "status" in table.columns else table
    x = pd.to_numeric(rows["fisher_mean"], errors="coerce").astype(float)
    y = pd.to_numeric(rows["angle_deg"], errors="coerce").astype(float)
    usable = x.map(math.isfinite) & y.map(math.isfinite)
    x, y = x[usable].to_numpy(), y[usable].to_numpy()
    n = len(x)
    reason: Optional[str] = None
    if n < 3:
        reason = f"fewer than 3 components with both a Fisher mean and an angle (n = {n})"
    elif (x == x[0]).all():
        reason = "fisher_mean is constant over the components"
    elif (y == y[0]).all():
        reason = "angle_deg is constant over the components"
    if reason is not None:
        return {"r": math.nan, "p": math.nan, "n": n, "reason": reason}
    result = stats.pearsonr(x, y)
    return {"r": float(result.statistic), "p": float(result.pvalue), "n": n, "reason": None}
