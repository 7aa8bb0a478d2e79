"""Test matrices whose geometry is known by construction (float64, CPU, seeded)."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch


def random_orthonormal(m: int, k: int, seed: int) -> torch.Tensor:
    """m×k with orthonormal columns, Haar-ish random (QR of a Gaussian)."""
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64)).Q


def with_spectrum(U: torch.Tensor, s: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """U diag(s) Vᵀ for U: m×k, s: k, V: n×k."""
    return (U * s.to(U.dtype)) @ V.mT


def spectrum_matrix(m: int, n: int, s: torch.Tensor, seed: int) -> torch.Tensor:
    """m×n matrix with singular values s (k ≤ min(m, n)) and random orthogonal factors."""
    k = s.numel()
    return with_spectrum(random_orthonormal(m, k, seed), s, random_orthonormal(n, k, seed + 10_000))


def inverse_spectrum(k: int) -> torch.Tensor:
    """σ_i = 1/i, i = 1..k: the slowly decaying spectrum of full fine-tuning updates."""
    return 1.0 / torch.arange(1, k + 1, dtype=torch.float64)


def planted_pair(m: int, angles: Sequence[float], seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal U1, U2 (m×r) whose principal angles are exactly ``angles`` (radians).

    U1 = Q[:, :r], U2[:, i] = cos θ_i Q[:, i] + sin θ_i Q[:, r+i] for a random
    orthogonal Q, so U1ᵀU2 = diag(cos θ). Needs m ≥ 2r.
    """
    r = len(angles)
    theta = torch.tensor(angles, dtype=torch.float64)
    q = random_orthonormal(m, 2 * r, seed)
    u1 = q[:, :r]
    u2 = q[:, :r] * torch.cos(theta) + q[:, r:] * torch.sin(theta)
    return u1, u2
