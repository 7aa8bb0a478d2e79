"""A truncated SVD of one update, and the rules that choose its rank.

:class:`SingularBasis` is what every basis-producing function returns (dense
exact, randomized, or from the factors of a LoRA update), so angle code never
needs to know how a basis was computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

__all__ = ["SingularBasis", "energy_rank", "truncated_basis", "target_rank"]

# Cumulative sums of squares rarely land exactly on energy·total in floating
# point; a slack of a few units of the input's precision keeps an exact
# boundary (e.g. 9 of 10 units at energy=0.9) on the side mathematics puts it.
_ENERGY_SLACK_EPS = 16


def _check_energy(energy: float) -> None:
    if not (0.0 < energy <= 1.0):
        raise ValueError(f"energy must lie in (0, 1], got {energy}")


def _check_max_rank(max_rank: Optional[int]) -> None:
    if max_rank is not None and max_rank < 0:
        raise ValueError(f"max_rank must be >= 0 or None, got {max_rank}")


def energy_rank(
    singular_values: torch.Tensor,
    total_energy: Optional[float] = None,
    energy: float = 0.9,
    max_rank: Optional[int] = None,
) -> int:
    """Smallest k with Σ_{j≤k} σ_j² ≥ energy · total_energy.

    Args:
        singular_values: r (1-D), non-negative; sorted descending here, so any order works.
        total_energy: the total Σσ² over *all* singular values, i.e. ‖ΔW‖²_F
            (squared units of the weights). Defaults to the sum of the given
            values; pass ‖ΔW‖²_F when only the top values are known.
        energy: fraction of the total energy to capture, in (0, 1].
        max_rank: cap on the result (None: no cap beyond ``len(singular_values)``).

    Returns:
        k in [0, len(singular_values)], further capped at ``max_rank``. If the
        given values never reach the target (only the top values are known), k
        is their count. A zero spectrum (total 0) gives 0. A target missed by
        less than 16 roundoff units of the input dtype (relative) counts as reached.

    >>> energy_rank(torch.tensor([2.0, 1.7320508, 1.4142135, 1.0]), energy=0.5)
    2
    >>> energy_rank(torch.tensor([2.0, 1.0]), total_energy=10.0, energy=0.9)
    2
    """
    if singular_values.dim() != 1:
        raise ValueError(f"singular_values must be 1-D, got shape {tuple(singular_values.shape)}")
    _check_energy(energy)
    _check_max_rank(max_rank)
    n = singular_values.numel()
    if n == 0:
        return 0
    dtype = singular_values.dtype
    slack = _ENERGY_SLACK_EPS * torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    squares = torch.sort(singular_values.detach().double().abs(), descending=True).values.square()
    cumulative = torch.cumsum(squares, 0).cpu()
    total = float(cumulative[-1]) if total_energy is None else float(total_energy)
    if math.isnan(total):
        raise ValueError("total_energy is NaN")
    if total <= 0.0:
        return 0
    threshold = energy * total * (1.0 - slack)
    k = int((cumulative < threshold).sum()) + 1
    k = min(k, n)
    return k if max_rank is None else min(k, max_rank)


def target_rank(
    full_rank: int, rank: int, energy: Optional[float], max_rank: Optional[int]
) -> int:
    """How many singular triplets to compute before truncation.

    Fixed rank: ``min(rank, full_rank)``. Energy rank: ``max_rank`` (capped at
    ``full_rank``; all of them when ``max_rank`` is None), since the energy
    rank is only known once the values are.
    """
    _check_max_rank(max_rank)
    if energy is None:
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        return min(rank, full_rank)
    _check_energy(energy)
    return full_rank if max_rank is None else min(max_rank, full_rank)


@dataclass(frozen=True, eq=False)
class SingularBasis:
    """Top-r singular triplets of an update ΔW (m×n): ΔW ≈ U · diag(S) · Vh.

    Attributes:
        U: m×r, orthonormal left singular vectors (columns).
        S: r, singular values, descending (units of the weights).
        Vh: r×n, orthonormal right singular vectors (rows).
        total_energy: ‖ΔW‖²_F of the *whole* update, not just the top r.

    r may be 0 (a zero update): U is m×0 and angles computed from it are an
    empty tensor, whose mean is NaN.
    """

    U: torch.Tensor
    S: torch.Tensor
    Vh: torch.Tensor
    total_energy: float

    def __post_init__(self) -> None:
        r = self.S.numel()
        shapes_ok = self.S.dim() == 1 and self.U.dim() == 2 and self.Vh.dim() == 2
        if not shapes_ok or self.U.shape[1] != r or self.Vh.shape[0] != r:
            raise ValueError(
                "inconsistent singular basis: U "
                f"{tuple(self.U.shape)}, S {tuple(self.S.shape)}, Vh {tuple(self.Vh.shape)} "
                "(expected m×r, r, r×n)"
            )

    @property
    def rank(self) -> int:
        """r, the number of singular triplets kept."""
        return self.S.numel()

    @property
    def shape(self) -> Tuple[int, int]:
        """(m, n), the shape of the update."""
        return (self.U.shape[0], self.Vh.shape[1])

    @property
    def V(self) -> torch.Tensor:
        """n×r, right singular vectors as columns (a view of ``Vh``)."""
        return self.Vh.mT

    @property
    def energy_captured(self) -> float:
        """Σ_{j≤r} σ_j² / ‖ΔW‖²_F in [0, 1]; NaN for a zero update."""
        if not self.total_energy > 0.0:
            return math.nan
        return min(float(self.S.double().square().sum()) / self.total_energy, 1.0)

    def vectors(self, side: str = "left") -> torch.Tensor:
        """``U`` (m×r) for ``side="left"``, ``V`` (n×r) for ``side="right"``."""
        if side == "left":
            return self.U
        if side == "right":
            return self.V
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")


def truncated_basis(
    U: torch.Tensor,
    S: torch.Tensor,
    Vh: torch.Tensor,
    total_energy: float,
    rank: int = 16,
    energy: Optional[float] = None,
    max_rank: Optional[int] = 64,
    noise_floor: float = 0.0,
) -> SingularBasis:
    """Keep the leading triplets of an SVD (U: m×k, S: k descending, Vh: k×n).

    r is ``rank`` or, when ``energy`` is given, the energy rank against
    ``total_energy`` (= ‖ΔW‖²_F) capped at ``max_rank``. Either way r is also
    capped at the signal rank: singular values ≤ max(m, n)·eps·σ₁ (eps of the
    working dtype) or ≤ ``noise_floor`` (units of the weights: e.g. the edge of
    the update's rounding noise, :mod:`.noise`) are dropped, because their
    directions are arbitrary (a rank-8 LoRA update has 8 meaningful directions,
    not 16). The kept slices are copied so the full factors can be freed.
    """
    m, n = U.shape[0], Vh.shape[1]
    if S.numel() == 0 or not float(S[0]) > 0.0:
        numerical_rank = 0
    else:
        tol = max(max(m, n) * torch.finfo(S.dtype).eps * float(S[0]), float(noise_floor))
        numerical_rank = int((S > tol).sum())
    if energy is None:
        r = min(target_rank(min(m, n), rank, None, max_rank), numerical_rank)
    else:
        r = min(energy_rank(S, total_energy, energy, max_rank), numerical_rank)
    return SingularBasis(U[:, :r].clone(), S[:r].clone(), Vh[:r].clone(), float(total_energy))
