"""Top singular basis of an update: exact SVD, or a randomized block Krylov method.

Fine-tuning updates have slowly decaying spectra, where a randomized SVD with
few power iterations is badly wrong (``torch.svd_lowrank``'s default niter=2:
17–26° principal-angle errors). The randomized path here is randomized block
Krylov iteration (Musco & Musco 2015; Halko, Martinsson & Tropp 2011 §4.5):
the range of [XΩ, (XXᵀ)XΩ, …, (XXᵀ)^niter XΩ] with a QR after every product.
Keeping every block, not just the last, gives the accuracy of subspace
iteration with twice the iterations: on a 1/i spectrum, q = r + 4 columns and
niter = 3 stay within 0.2° of exact SVD at ~60% of the cost of q = r + 10,
niter = 6 subspace iteration (measured on 576–49152-row updates).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

from ._tensors import require_matrix, to_working
from .factored import FactoredUpdate
from .spectrum import SingularBasis, target_rank, truncated_basis

__all__ = ["top_singular_basis", "randomized_svd"]

_METHODS = ("auto", "exact", "randomized")
# Below this many entries an exact SVD costs about as much as the randomized path (~2 ms).
_SMALL_NUMEL = 256 * 256


def randomized_svd(
    x: torch.Tensor, q: int, *, niter: int = 3, seed: int = 0
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Approximate top-q SVD of x (m×n) by randomized block Krylov iteration.

    Returns (U: m×q, S: q descending, Vh: q×n) in x's dtype and device; q is
    capped at min(m, n). The Krylov space has q·(niter + 1) columns (capped at
    min(m, n)); its best rank-q approximation is returned. The Gaussian test
    matrix (n×q) is drawn in float64 on the CPU from
    ``torch.Generator().manual_seed(seed)`` and then moved, so a seed gives the
    same basis on CPU and GPU up to rounding. Only the leading ~q − 4 triplets
    are accurate: ask for more than you keep.
    """
    require_matrix("x", x)
    if niter < 0:
        raise ValueError(f"niter must be >= 0, got {niter}")
    m, n = x.shape
    q = min(q, m, n)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(n, q, generator=generator, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    block = torch.linalg.qr(x @ omega).Q
    blocks = [block]
    for _ in range(niter):
        # Re-orthonormalizing after every product keeps the small singular
        # directions from drowning in rounding error of the large ones.
        block = torch.linalg.qr(x.mT @ block).Q
        block = torch.linalg.qr(x @ block).Q
        blocks.append(block)
    krylov = torch.cat(blocks, dim=1)[:, : min(m, n)]
    basis = torch.linalg.qr(krylov).Q
    # SVD of the small k×n projection through the QR of its transpose: LAPACK is
    # 2–3× faster on the k×k triangle than on the wide matrix, with no squaring.
    q_t, r_t = torch.linalg.qr((basis.mT @ x).mT)
    u_r, s, vh_r = torch.linalg.svd(r_t)
    return basis @ vh_r.mT[:, :q], s[:q], (q_t @ u_r[:, :q]).mT


def top_singular_basis(
    delta: Union[torch.Tensor, FactoredUpdate],
    rank: int = 16,
    *,
    energy: Optional[float] = None,
    max_rank: Optional[int] = 64,
    method: str = "auto",
    oversample: int = 4,
    niter: int = 3,
    seed: int = 0,
) -> SingularBasis:
    """Top singular triplets of an update ΔW (m×n): U m×r, S r, Vh r×n.

    Args:
        delta: ΔW as an m×n tensor (any float dtype: half precision is upcast
            to float32, float64 stays float64; computed on its device), or a
            :class:`FactoredUpdate`, whose exact basis comes from its factors
            (``method``, ``oversample``, ``niter`` and ``seed`` are then unused).
        rank: number of triplets r when ``energy`` is None.
        energy: if given, r is instead the energy rank, the smallest k with
            Σ_{j≤k} σ_j² ≥ energy·‖ΔW‖²_F, capped at ``max_rank``.
        max_rank: cap on the energy rank (None: no cap, which forces the full
            spectrum). Does not cap a fixed ``rank``.
        method: ``"exact"`` (``torch.linalg.svd``), ``"randomized"``
            (:func:`randomized_svd` with q = r + oversample), or ``"auto"``:
            exact when min(m, n) ≤ 2q or m·n ≤ 256², randomized otherwise.
        oversample: extra columns of each Krylov block (block size q = r + oversample).
        niter: Krylov iterations (each one a product with X and one with Xᵀ).
        seed: seed of the randomized test matrix.

    r is always capped at min(m, n) and at the numerical rank (singular values
    ≤ max(m, n)·eps·σ₁ are dropped). A zero update gives r = 0 (U is m×0).

    >>> d = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
    >>> b = top_singular_basis(d, rank=2)
    >>> b.S, b.rank, round(b.energy_captured, 4)
    (tensor([3., 2.]), 2, 0.9286)
    >>> top_singular_basis(d, energy=0.5).rank
    1
    """
    if isinstance(delta, FactoredUpdate):
        return delta.basis(rank, energy=energy, max_rank=max_rank)
    require_matrix("delta", delta)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if oversample < 0:
        raise ValueError(f"oversample must be >= 0, got {oversample}")
    (x,) = to_working(delta)
    m, n = x.shape
    total = float(torch.linalg.vector_norm(x)) ** 2
    if not math.isfinite(total):
        raise ValueError(f"delta of shape {tuple(x.shape)} holds NaN/Inf values (or its norm overflows)")
    k = target_rank(min(m, n), rank, energy, max_rank)
    if total == 0.0 or k == 0:
        return SingularBasis(x.new_zeros(m, 0), x.new_zeros(0), x.new_zeros(0, n), total)
    q = k + oversample
    if method == "auto":
        method = "exact" if min(m, n) <= 2 * q or m * n <= _SMALL_NUMEL else "randomized"
    if method == "exact":
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
    else:
        u, s, vh = randomized_svd(x, q, niter=niter, seed=seed)
    return truncated_basis(u, s, vh, total, rank, energy, max_rank)
