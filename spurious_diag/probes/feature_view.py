"""The paper's feature view (its §3.5; DESIGN.md §2c): how one training window moves the hidden
states of the old task's queries, per attribute and layer.

For a window (e.g. ``"Task 0"`` = base → Task-0 model, ``"Task 1 early"`` = θ_a → θ_b,
``"Task 1 rest"`` = θ_b → θ_end) a *before* and an *after* model read the same QA prompts.
At the last prompt token (:func:`.hidden.last_prompt_hidden_states`) each gives, per layer, a
cloud of N states (N×D, one row per record of the attribute). Per attribute and layer:

- ``mean_shift``: ‖μ_after − μ_before‖₂, hidden-state units;
- ``mean_shift_rel``: the same divided by ‖μ_before‖₂ (:func:`.similarity.mean_shift_rel`);
- ``pc_angle_deg``: the angle between the clouds' first principal directions, sign-aligned,
  degrees in [0, 90] (:func:`.similarity.first_pc_angle_deg`);
- the 2-D picture: PCA fitted on the *before* cloud, both clouds projected onto its first two
  components (:func:`pca_projection`), so the after cloud is seen in the before coordinates and
  its shift is visible.

Layers are numbered as :func:`.hidden.last_prompt_hidden_states` numbers them: 0 = the embedding
output, l = the output of block l − 1, and the last index L is (in most HF decoders) the output
of block L − 1 after the final norm. At layer 0 every QA prompt ends with the same token, so the
clouds are single points: their principal directions, angle and projections are NaN.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import MismatchError, UsageError
from .hidden import last_prompt_hidden_states
from .records import as_probe_records
from .similarity import first_pc_angle_deg, mean_shift_rel

__all__ = ["FEATURE_SUMMARY_COLUMNS", "FEATURE_POINT_COLUMNS", "FeatureView", "feature_shift", "pca_projection",
           "feature_view"]

logger = logging.getLogger(__name__)

FEATURE_SUMMARY_COLUMNS = ["window", "attribute", "layer", "n", "mean_shift", "mean_shift_rel", "pc_angle_deg"]
FEATURE_POINT_COLUMNS = ["window", "attribute", "layer", "which", "person_id", "pc1", "pc2"]

# A principal component whose singular value is below this fraction of the largest one (or below
# the absolute floor of similarity.first_principal_direction) is rounding, not variance: undefined.
_RELATIVE_TOL = 1e-10


def _check_pair(before: torch.Tensor, after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if before.ndim != 2 or after.shape != before.shape:
        raise MismatchError(f"expected before and after states of the same N×D shape, got {tuple(before.shape)} "
                            f"and {tuple(after.shape)}")
    return before.detach().to(torch.float64), after.detach().to(torch.float64)


def feature_shift(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """How far one cloud of hidden states moved: the same N inputs, before and after a window.

    Args:
        before: N×D hidden states of the before model (row i = input i).
        after: N×D hidden states of the after model on the same inputs.

    Returns:
        ``mean_shift`` (‖μ_after − μ_before‖₂, hidden-state units), ``mean_shift_rel`` (that over
        ‖μ_before‖₂; NaN when μ_before = 0) and ``pc_angle_deg`` (degrees in [0, 90] between the
        sign-aligned first principal directions; NaN when N < 2 or either cloud has no variance).
        Computed in float64.

    >>> x = torch.tensor([[-1.0, 2.0], [1.0, 2.0]])  # mean (0, 2)
    >>> feature_shift(x, x + torch.tensor([0.0, 3.0]))
    {'mean_shift': 3.0, 'mean_shift_rel': 1.5, 'pc_angle_deg': 0.0}
    """
    b, a = _check_pair(before, after)
    shift = float(torch.linalg.vector_norm(a.mean(dim=0) - b.mean(dim=0)))
    angle = first_pc_angle_deg(b, a) if b.shape[0] >= 2 else math.nan
    return {"mean_shift": shift, "mean_shift_rel": mean_shift_rel(b, a), "pc_angle_deg": angle}


def pca_projection(before: torch.Tensor, after: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Both clouds in the coordinates of the before cloud's first ``k`` principal components.

    The PCA is fitted on ``before`` alone (centered on its mean, exact SVD in float64); both
    clouds are centered on the *before* mean and projected, so the after cloud's offset from
    the origin is the mean shift as seen in that plane. Each component's sign is fixed so that
    its largest-magnitude loading is positive (the first one on ties): deterministic, nothing
    to seed. A component the before cloud has no variance along (N − 1 < k, D < k, or identical
    rows) is undefined and its column is NaN.

    Args:
        before: N×D hidden states the PCA is fitted on.
        after: N×D hidden states of the same inputs after the window.
        k: number of components (≥ 1).

    Returns:
        (proj_before, proj_after), each N×k float64: the before cloud's projections have mean 0.

    >>> b = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, -0.5]])
    >>> pb, pa = pca_projection(b, b + torch.tensor([0.0, 3.0]))
    >>> [round(v, 12) + 0.0 for v in pa.mean(dim=0).tolist()]
    [0.0, 3.0]
    """
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    b, a = _check_pair(before, after)
    n, d = b.shape
    mean = b.mean(dim=0)
    centered = b - mean
    components = torch.full((k, d), math.nan, dtype=torch.float64)
    if n >= 2:
        _, s, vh = torch.linalg.svd(centered, full_matrices=False)
        # the absolute floor of first_principal_direction: σ₁² ≤ 1e-20 · max|x|² · N is no variance
        floor = math.sqrt(1e-20 * float(b.abs().max()) ** 2 * n)
        tol = max(_RELATIVE_TOL * float(s[0]), floor) if s.numel() else math.inf
        for i in range(min(k, s.numel())):
            if float(s[i]) <= tol:
                break
            v = vh[i]
            components[i] = v if v[v.abs().argmax()] >= 0 else -v
    return centered @ components.T, (a - mean) @ components.T


@dataclass
class FeatureView:
    """The feature view of one window.

    Attributes:
        summary: one row per attribute × layer, :data:`FEATURE_SUMMARY_COLUMNS` (``n`` = records
            of the attribute; the shift columns as in :func:`feature_shift`).
        points: one row per attribute × layer × which (``before`` / ``after``) × record,
            :data:`FEATURE_POINT_COLUMNS`: the record's ``person_id`` (None when the records
            carry none) and its (pc1, pc2) from :func:`pca_projection`, in record order.
    """

    summary: pd.DataFrame
    points: pd.DataFrame


def feature_view(
    before_model: PreTrainedModel,
    after_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Any],
    *,
    window: str,
    layers: Optional[Sequence[int]] = None,
    batch_size: int = 256,
) -> FeatureView:
    """The paper's feature view of one training window, per attribute and layer.

    Args:
        before_model, after_model: the checkpoints at the start and end of the window (one
            architecture, one tokenizer).
        tokenizer: encodes the prompts as in training.
        records: QA records (mappings or objects with ``prompt``, ``completion``, and
            optionally ``attribute`` (default ``"all"``) and ``person_id``); only the prompts are
            read. Attributes are reported in first-seen order.
        window: the window's name, written into every row (e.g. ``"Task 1 early"``).
        layers: hidden-state indices to report (0 = embeddings, l = output of block l − 1, L =
            last block after the final norm); default all 0..L.
        batch_size: prompts per forward pass.

    Returns:
        A :class:`FeatureView` (``summary`` and ``points`` frames).

    Raises:
        InvalidDataError: no records, or a record without a prompt.
        MismatchError: the two models' hidden states differ in shape.
        UsageError: a layer outside 0..L.
    """
    recs = as_probe_records(records)
    prompts = [r.prompt for r in recs]
    hidden_before = last_prompt_hidden_states(before_model, tokenizer, prompts, batch_size=batch_size)
    hidden_after = (hidden_before if after_model is before_model
                    else last_prompt_hidden_states(after_model, tokenizer, prompts, batch_size=batch_size))
    if hidden_before.shape != hidden_after.shape:
        raise MismatchError(f"the models' hidden states differ in shape: {tuple(hidden_before.shape)} vs "
                            f"{tuple(hidden_after.shape)}")
    num_hidden = hidden_before.shape[0]
    chosen = list(range(num_hidden)) if layers is None else [int(x) for x in layers]
    outside = [x for x in chosen if not 0 <= x < num_hidden]
    if outside:
        raise UsageError(f"layers {outside} outside 0..{num_hidden - 1} (0 = embeddings)")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(recs):
        groups.setdefault(r.attribute, []).append(i)
    summary_rows: list[dict[str, Any]] = []
    point_rows: list[dict[str, Any]] = []
    for attribute, rows in groups.items():
        index = torch.tensor(rows, dtype=torch.long)
        people = [recs[i].person_id for i in rows]
        for layer in chosen:
            before, after = hidden_before[layer, index], hidden_after[layer, index]
            shift = feature_shift(before, after)
            summary_rows.append({"window": window, "attribute": attribute, "layer": layer, "n": len(rows), **shift})
            for which, proj in zip(("before", "after"), pca_projection(before, after, k=2)):
                for person, (pc1, pc2) in zip(people, proj.tolist()):
                    point_rows.append({"window": window, "attribute": attribute, "layer": layer, "which": which,
                                       "person_id": person, "pc1": pc1, "pc2": pc2})
    summary = pd.DataFrame(summary_rows, columns=FEATURE_SUMMARY_COLUMNS)
    points = pd.DataFrame(point_rows, columns=FEATURE_POINT_COLUMNS)
    logger.info("feature view %r: %d records, %d attributes, %d layers", window, len(recs), len(groups), len(chosen))
    return FeatureView(summary, points)
