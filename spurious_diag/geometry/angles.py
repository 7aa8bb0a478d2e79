"""Principal angles between subspaces, overlaps, and the paper's one-sided angle.

All angles are in radians (``torch.rad2deg`` converts). Small angles are
computed from sines and large ones from cosines (Knyazev & Argentati 2002),
so a planted 0° comes out below 1e-7 rad even in float32, where arccos of a
cosine alone cannot resolve angles under ~3e-4 rad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._tensors import require_matrix, to_working
from .spectrum import SingularBasis

__all__ = [
    "BasisComparison",
    "compare_bases",
    "principal_angles",
    "basis_angles",
    "subspace_overlap",
    "random_overlap",
    "one_sided_angles",
]


def _check_same_rows(a: torch.Tensor, b: torch.Tensor, names: str = "A and B") -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names} must have the same number of rows (ambient dimension m), "
            f"got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _orthonormal_basis(a: torch.Tensor) -> torch.Tensor:
    """m×rank orthonormal basis of the column space of a (m×p).

    A thin QR first (cheap for tall a), then an SVD of the small R to reveal
    the rank: plain QR cannot tell a zero column from a tiny one. Tolerance
    max(m, p)·eps·σ₁, as in ``scipy.linalg.orth``.
    """
    m, p = a.shape
    if m == 0 or p == 0:
        return a.new_zeros(m, 0)
    q, r = torch.linalg.qr(a)
    u_r, s, _ = torch.linalg.svd(r)
    tol = max(m, p) * torch.finfo(s.dtype).eps * float(s[0])
    numerical_rank = int((s > tol).sum()) if float(s[0]) > 0.0 else 0
    return q @ u_r[:, :numerical_rank]


def _angles_between_orthonormal(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between orthonormal q1 (m×a), q2 (m×b)."""
    if q1.shape[1] < q2.shape[1]:
        q1, q2 = q2, q1
    if q2.shape[1] == 0:
        return q2.new_zeros(0)
    cross = q1.mT @ q2  # a×k, a ≥ k
    return _angles_from(cross, q2 - q1 @ cross)


def _angles_from(cross: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Principal angles from cross = Q₁ᵀQ₂ (a×k, a ≥ k) and residual = Q₂ − Q₁·cross (m×k)."""
    cosines = torch.linalg.svdvals(cross)  # descending: smallest angles first
    # With a ≥ k the k singular values of the residual are exactly the sines.
    sines = torch.linalg.svdvals(residual).flip(0)  # ascending, paired with cosines
    from_cos = torch.arccos(cosines.clamp(0.0, 1.0))
    from_sin = torch.arcsin(sines.clamp(0.0, 1.0))
    theta = torch.where(from_cos < math.pi / 4, from_sin, from_cos)
    return torch.sort(theta).values


def principal_angles(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Principal angles between the column spaces of A (m×p) and B (m×q).

    Inputs need not be orthonormal nor of full rank: each is orthonormalized
    (rank-revealing) first. Computed in float32 (half precision is upcast) or
    float64, on the inputs' device.

    Returns:
        1-D tensor of length min(rank A, rank B), radians in [0, π/2],
        ascending. Empty when either matrix is zero.

    >>> A = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    >>> B = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    >>> [round(float(a), 6) for a in torch.rad2deg(principal_angles(A, B))]
    [0.0, 45.0]
    """
    require_matrix("A", A)
    require_matrix("B", B)
    _check_same_rows(A, B)
    a, b = to_working(A, B)
    return _angles_between_orthonormal(_orthonormal_basis(a), _orthonormal_basis(b))


def basis_angles(b1: SingularBasis, b2: SingularBasis, side: str = "left") -> torch.Tensor:
    """Principal angles (radians, ascending) between two singular bases of updates.

    The bases are already orthonormal, so cos θ_i = σ_i(U₁ᵀU₂) with no
    re-orthonormalization. ``side="left"`` compares U₁ (m×r₁) with U₂ (m×r₂),
    ``side="right"`` compares V₁ (n×r₁) with V₂ (n×r₂). Length min(r₁, r₂);
    empty (mean NaN) when either basis has rank 0.
    """
    v1, v2 = b1.vectors(side), b2.vectors(side)
    _check_same_rows(v1, v2, f"{side} singular vectors")
    return _angles_between_orthonormal(*to_working(v1, v2))


def subspace_overlap(U1: torch.Tensor, U2: torch.Tensor) -> float:
    """‖U₁ᵀU₂‖²_F / min(r₁, r₂) ∈ [0, 1] for orthonormal U₁ (m×r₁), U₂ (m×r₂).

    Equals the mean of cos² θ_i over the min(r₁, r₂) principal angles: 1 when
    one subspace contains the other, 0 when orthogonal, and on average
    :func:`random_overlap` (m, r₁, r₂) for random subspaces. NaN if r₁ or r₂ is 0.
    """
    require_matrix("U1", U1)
    require_matrix("U2", U2)
    _check_same_rows(U1, U2, "U1 and U2")
    if min(U1.shape[1], U2.shape[1]) == 0:
        return math.nan
    u1, u2 = to_working(U1, U2)
    return _overlap_from(u1.mT @ u2)


def _overlap_from(cross: torch.Tensor) -> float:
    """‖cross‖²_F / min(r₁, r₂) for cross = U₁ᵀU₂ (r₁×r₂, both ≥ 1), capped at 1."""
    return min(float(torch.linalg.matrix_norm(cross)) ** 2 / min(cross.shape), 1.0)


def random_overlap(m: int, r1: int, r2: int) -> float:
    """max(r₁, r₂) / m, the expected :func:`subspace_overlap` of random subspaces.

    For uniformly random r₁- and r₂-dimensional subspaces of R^m,
    E‖U₁ᵀU₂‖²_F = r₁r₂/m. NaN if r₁ or r₂ is 0.

    >>> random_overlap(576, 16, 8)
    0.027777777777777776
    """
    if m <= 0 or not (0 <= r1 <= m and 0 <= r2 <= m):
        raise ValueError(f"need m > 0 and 0 <= r1, r2 <= m, got m={m}, r1={r1}, r2={r2}")
    if min(r1, r2) == 0:
        return math.nan
    return max(r1, r2) / m


def one_sided_angles(U1: torch.Tensor, U2: torch.Tensor) -> torch.Tensor:
    """The paper's angle: for each column u of U2, θ = arccos ‖U₁ᵀu‖ / ‖u‖ (radians).

    Args:
        U1: m×r₁ with orthonormal columns (e.g. update 1's top singular vectors).
        U2: m×r₂, e.g. update 2's top singular vectors; columns need not be unit.

    Returns:
        1-D tensor of length r₂ in the column order of U2 (not sorted), in
        [0, π/2]: the angle between each column and span(U1). Computed as
        atan2(‖u − U₁U₁ᵀu‖, ‖U₁ᵀu‖), accurate for small and large angles. A
        zero column gives NaN; an empty U1 gives π/2.
    """
    require_matrix("U1", U1)
    require_matrix("U2", U2)
    _check_same_rows(U1, U2, "U1 and U2")
    u1, u2 = to_working(U1, U2)
    projection = u1.mT @ u2
    return _one_sided_from(u2, projection, u2 - u1 @ projection)


def _one_sided_from(u2: torch.Tensor, cross: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """One-sided angles from cross = U₁ᵀU₂ (r₁×r₂) and residual = U₂ − U₁·cross (m×r₂); NaN for zero columns."""
    theta = torch.atan2(torch.linalg.vector_norm(residual, dim=0), torch.linalg.vector_norm(cross, dim=0))
    return torch.where(torch.linalg.vector_norm(u2, dim=0) > 0, theta, torch.nan)


@dataclass(frozen=True)
class BasisComparison:
    """How two singular bases of updates relate on one side, from one shared pass.

    Attributes:
        angles: principal angles, radians, ascending; length min(r₁, r₂) (see :func:`basis_angles`).
        overlap: ‖U₁ᵀU₂‖²_F / min(r₁, r₂) (see :func:`subspace_overlap`); NaN if a rank is 0.
        one_sided: the paper's angle of each vector of basis 2 to the span of basis 1,
            radians, in basis 2's order (see :func:`one_sided_angles`).
    """

    angles: torch.Tensor
    overlap: float
    one_sided: torch.Tensor


def compare_bases(b1: SingularBasis, b2: SingularBasis, side: str = "left") -> BasisComparison:
    """Principal angles, overlap and one-sided angles of two bases (``side`` as in :func:`basis_angles`).

    Equal to calling the three functions, but the products U₁ᵀU₂ and
    U₂ − U₁U₁ᵀU₂ are formed once for all of them.
    """
    u1, u2 = to_working(b1.vectors(side), b2.vectors(side))
    _check_same_rows(u1, u2, f"{side} singular vectors")
    r1, r2 = u1.shape[1], u2.shape[1]
    cross = u1.mT @ u2  # r₁×r₂
    residual = u2 - u1 @ cross  # m×r₂: each vector of basis 2 outside span(basis 1)
    one_sided = _one_sided_from(u2, cross, residual)
    if min(r1, r2) == 0:
        return BasisComparison(u2.new_zeros(0), math.nan, one_sided)
    overlap = _overlap_from(cross)
    angles = _angles_from(cross, residual) if r1 >= r2 else _angles_from(cross.mT, u1 - u2 @ cross.mT)
    return BasisComparison(angles, overlap, one_sided)
