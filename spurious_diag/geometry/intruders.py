"""Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence").

A top singular vector of the fine-tuned weight is an *intruder* when it is
nearly orthogonal to every singular vector of the pre-trained weight: the
fine-tuning created a new high-energy direction instead of reshaping existing
ones. This needs an exact SVD of both whole weights, so it is opt-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from ._tensors import require_matrix, to_working

__all__ = ["IntruderResult", "intruder_dimensions"]


@dataclass(frozen=True)
class IntruderResult:
    """Outcome of :func:`intruder_dimensions`.

    Attributes:
        indices: rank positions (0-based, in descending singular-value order
            among the top k of W_after) of the intruder dimensions, ascending.
        max_cos: for each intruder, its largest |cos| with any singular vector of W_before.
        top_max_cos: that largest |cos| for every one of the top k (length k).
        k: the number of top vectors examined (after capping at min(m, n)).
        eps: the threshold used.
    """

    indices: Tuple[int, ...]
    max_cos: Tuple[float, ...]
    top_max_cos: Tuple[float, ...]
    k: int
    eps: float

    @property
    def count(self) -> int:
        """Number of intruder dimensions among the top k."""
        return len(self.indices)


def intruder_dimensions(
    w_before: torch.Tensor,
    w_after: torch.Tensor,
    k: int = 10,
    eps: float = 0.5,
    *,
    side: str = "left",
    logging_sink: Optional[Callable[[str], None]] = None,
) -> IntruderResult:
    """Find intruder dimensions of ``w_after`` relative to ``w_before``.

    Args:
        w_before: W_a, the weight before fine-tuning, m×n (any float dtype;
            half precision is upcast to float32, computed on its device).
        w_after: W_b, the weight after fine-tuning, m×n (the whole weight,
            not the update).
        k: how many of W_b's top singular vectors to examine (the paper's
            default 10); capped at min(m, n). Larger k examines weaker
            directions and finds more (and noisier) intruders.
        eps: threshold in (0, 1]: a top vector is an intruder when its largest
            |cos| with the min(m, n) singular vectors of W_a (thin SVD) is below
            eps. Lower eps flags only near-orthogonal directions.
        side: ``"left"`` compares left singular vectors (columns of U, the
            output space m, as the paper does); ``"right"`` compares right
            singular vectors (the input space n).
        logging_sink: optional callable receiving one line summarizing the
            result (e.g. ``print`` or ``logger.info``); None is silent.

    Exact SVDs of both m×n weights (O(m·n·min(m, n))). Where W_a has
    (near-)repeated singular values its singular vectors are not unique, and
    max |cos| of a vector in that eigenspace can drop spuriously.

    >>> w = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    >>> intruder_dimensions(w, w * 1.01).count
    0
    """
    require_matrix("w_before", w_before)
    require_matrix("w_after", w_after)
    if w_before.shape != w_after.shape:
        raise ValueError(
            f"w_before has shape {tuple(w_before.shape)} but w_after has shape {tuple(w_after.shape)}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not (0.0 < eps <= 1.0):
        raise ValueError(f"eps must lie in (0, 1], got {eps}")
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    before, after = to_working(w_before, w_after)
    if not (torch.isfinite(before).all() and torch.isfinite(after).all()):
        raise ValueError(f"weights of shape {tuple(before.shape)} hold NaN/Inf values")
    if side == "right":
        before, after = before.mT, after.mT
    k = min(k, *before.shape)
    u_before = torch.linalg.svd(before, full_matrices=False).U
    u_after = torch.linalg.svd(after, full_matrices=False).U[:, :k]
    top_max_cos = (u_after.mT @ u_before).abs().amax(dim=1).tolist()
    indices = tuple(i for i, c in enumerate(top_max_cos) if c < eps)
    result = IntruderResult(
        indices=indices,
        max_cos=tuple(top_max_cos[i] for i in indices),
        top_max_cos=tuple(top_max_cos),
        k=k,
        eps=eps,
    )
    if logging_sink is not None:
        m, n = w_after.shape
        logging_sink(
            f"intruder dimensions ({side}, {m}×{n}): {result.count} of top {k} below eps={eps}"
            + (f" at ranks {list(indices)}" if indices else "")
        )
    return result
