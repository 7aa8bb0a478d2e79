"""Pure math on two sets of representations of the same N inputs (rows): CKA, HSIC, mean shift, PC angle.

Every function takes X: N×D_x and Y: N×D_y (row i of both = the same input), computes in
float64, and returns a Python float. Nothing here touches a model.

- Linear CKA (Kornblith et al., 2019): with column-centered X, Y,
  CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F · ‖YᵀY‖_F) ∈ [0, 1]; invariant to orthogonal transforms and
  isotropic scaling of either side.
- Unbiased HSIC (Song et al., 2012) of the linear kernels K = XXᵀ, L = YYᵀ with zeroed diagonals
  K̃, L̃: HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1 / ((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)), n ≥ 4.
  Debiased CKA = HSIC₁(K, L) / √(HSIC₁(K, K) · HSIC₁(L, L)) (Nguyen et al. 2021's "debiased
  CKA"); it removes plain CKA's upward bias when D is not small against N. Computed in feature
  space in O(N·D²) without forming N×N matrices (:func:`unbiased_hsic_gram` is the N×N
  reference).
- Mean shift: ‖mean(Y) − mean(X)‖₂ / ‖mean(X)‖₂ (D_x = D_y).
- First-PC angle: the angle between the top principal directions of X and Y, with the sign
  ambiguity removed: arccos|⟨v_x, v_y⟩| in degrees ∈ [0, 90]. Exact eigendecomposition of the
  D×D covariance: deterministic, nothing random to seed.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

__all__ = ["linear_cka", "unbiased_hsic", "unbiased_hsic_gram", "debiased_linear_cka", "mean_shift_rel",
           "first_principal_direction", "first_pc_angle_deg"]


def _pair(x: torch.Tensor, y: torch.Tensor, same_width: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"expected two 2-D tensors (N×D), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must have the same rows (inputs): {tuple(x.shape)} vs {tuple(y.shape)}")
    if same_width and x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must have the same width: {tuple(x.shape)} vs {tuple(y.shape)}")
    return x.detach().to(torch.float64), y.detach().to(torch.float64)


def _center(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=0, keepdim=True)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of X (N×D_x) and Y (N×D_y); NaN when either side is constant.

    >>> x = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    >>> round(linear_cka(x, 3 * x), 12)
    1.0
    """
    x, y = _pair(x, y)
    x, y = _center(x), _center(y)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / denom) if float(denom) > 0 else math.nan


def unbiased_hsic(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased HSIC₁ of the linear kernels of X (N×D_x) and Y (N×D_y), in feature space, N ≥ 4.

    Inputs are column-centered first (the estimator does not depend on it; centering only
    helps the rounding).
    """
    x, y = _pair(x, y)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"unbiased HSIC needs N >= 4 inputs, got {n}")
    x, y = _center(x), _center(y)
    k_diag, l_diag = (x * x).sum(dim=1), (y * y).sum(dim=1)  # N
    trace_kl = torch.linalg.matrix_norm(x.T @ y) ** 2 - (k_diag * l_diag).sum()
    k_row = x @ x.sum(dim=0) - k_diag  # K̃1, N
    l_row = y @ y.sum(dim=0) - l_diag
    k_sum, l_sum = k_row.sum(), l_row.sum()
    value = (trace_kl + k_sum * l_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k_row @ l_row)) / (n * (n - 3))
    return float(value)


def unbiased_hsic_gram(k: torch.Tensor, l_: torch.Tensor) -> float:
    """Reference HSIC₁ from two N×N Gram matrices (O(N²) memory; for tests and small N)."""
    if k.shape != l_.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"expected two N×N Gram matrices, got {tuple(k.shape)} and {tuple(l_.shape)}")
    n = k.shape[0]
    if n < 4:
        raise ValueError(f"unbiased HSIC needs N >= 4 inputs, got {n}")
    k = k.to(torch.float64).clone().fill_diagonal_(0.0)
    l_ = l_.to(torch.float64).clone().fill_diagonal_(0.0)
    ones = torch.ones(n, dtype=torch.float64)
    value = (torch.trace(k @ l_) + (ones @ k @ ones) * (ones @ l_ @ ones) / ((n - 1) * (n - 2))
             - 2.0 / (n - 2) * (ones @ k @ l_ @ ones)) / (n * (n - 3))
    return float(value)


def debiased_linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA from unbiased HSIC₁ (may fall slightly below 0 for unrelated X, Y); NaN if undefined."""
    xy, xx, yy = unbiased_hsic(x, y), unbiased_hsic(x, x), unbiased_hsic(y, y)
    if xx <= 0 or yy <= 0:
        return math.nan
    return xy / math.sqrt(xx * yy)


def mean_shift_rel(x: torch.Tensor, y: torch.Tensor) -> float:
    """‖mean(Y) − mean(X)‖ / ‖mean(X)‖ over the rows of X, Y (N×D each); NaN if mean(X) = 0.

    >>> x = torch.ones(4, 3)
    >>> mean_shift_rel(x, 2 * x)
    1.0
    """
    x, y = _pair(x, y, same_width=True)
    mx = x.mean(dim=0)
    norm = float(torch.linalg.vector_norm(mx))
    return float(torch.linalg.vector_norm(y.mean(dim=0) - mx)) / norm if norm > 0 else math.nan


def first_principal_direction(x: torch.Tensor) -> Optional[torch.Tensor]:
    """Unit top eigenvector (D) of the covariance of X (N×D), float64, sign fixed so its
    largest-magnitude entry is positive (deterministic); None when X has no variance (the
    direction is undefined, e.g. every prompt ends with the same token at the embedding layer)."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected N×D with N >= 2, got {tuple(x.shape)}")
    xc = _center(x.detach().to(torch.float64))
    values, vectors = torch.linalg.eigh(xc.T @ xc)
    scale = float(x.detach().to(torch.float64).abs().max()) ** 2 * x.shape[0]
    if float(values[-1]) <= 1e-20 * max(scale, 1e-300):
        return None
    v = vectors[:, -1]
    return v if v[v.abs().argmax()] >= 0 else -v


def first_pc_angle_deg(x: torch.Tensor, y: torch.Tensor) -> float:
    """Angle in degrees ∈ [0, 90] between the first principal directions of X and Y (N×D each),
    sign-aligned (|cos|); NaN when either has no variance."""
    x, y = _pair(x, y, same_width=True)
    vx, vy = first_principal_direction(x), first_principal_direction(y)
    if vx is None or vy is None:
        return math.nan
    cos = abs(float(vx @ vy))
    return math.degrees(math.acos(min(1.0, cos)))
