"""The rounding noise of stored weights, and the noise floor it puts under an update's spectrum.

A checkpoint stores each weight rounded to its dtype, so a stored update is
ΔW_stored = ΔW + E_b − E_a: the true update plus rounding errors that are full-rank and
nearly independent from element to element (DESIGN.md §2b). The error of one element w is
uniform in ±ulp(w)/2, of variance ulp(w)²/12, where ulp(w) is the spacing of the stored
dtype's numbers at w: 2^(⌊log₂|w|⌋ − p) with p the dtype's stored mantissa bits
(bfloat16 7, float16 10, float32 23, float64 52). So

    noise_fro² = Σ_i ulp_b(w_b,i)²/12 + Σ_i ulp_a(w_a,i)²/12

is the expected squared Frobenius norm of the noise of an update between two stored
checkpoints (:func:`rounding_noise_sq` gives each sum). An m×n matrix of independent noise
of element standard deviation s has its largest singular value near the Marchenko–Pastur
edge s·(√m + √n). Rounding noise is not identically distributed: its variance follows w², so
rows and columns of large weights carry more of it, and on real weights (SmolLM2-135M) its
largest singular value was up to 3.5× the Marchenko–Pastur edge of the same total. The edge
used here is √(max_i Σ_j v_ij) + √(max_j Σ_i v_ij) over the element variances v
(:func:`noise_edge`; Bandeira & van Handel 2016), which is the Marchenko–Pastur edge for
identically distributed noise and stayed above the measured largest singular value (at 0.5–0.9
of it) on every SmolLM2 weight tried. Directions of ΔW whose singular values do not rise above
it cannot be told from rounding. A LoRA update scale·B·A carries the rounding of its factors
instead (:func:`factored_noise`).

The sums are exact functions of the stored bits (the exponent of every value), not estimates
from the values' magnitudes.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

__all__ = ["MANTISSA_BITS", "ulp", "rounding_variance", "rounding_noise_sq", "noise_edge", "factored_noise"]

# Stored mantissa bits (without the implicit leading 1) of each float dtype.
MANTISSA_BITS: dict[torch.dtype, int] = {torch.bfloat16: 7, torch.float16: 10, torch.float32: 23, torch.float64: 52}

# Bit layout of the containers the exponents are read from: (integer view, mantissa bits, exponent mask, bias).
_LAYOUT = {torch.float32: (torch.int32, 23, 0xFF, 127), torch.float64: (torch.int64, 52, 0x7FF, 1023)}


def _bits(stored: torch.dtype) -> Tuple[int, int]:
    """(p, the stored mantissa bits; e_min, the smallest normal exponent) of ``stored``."""
    if stored not in MANTISSA_BITS:
        raise ValueError(f"no rounding model for dtype {stored}; expected one of {list(MANTISSA_BITS)}")
    return MANTISSA_BITS[stored], int(math.log2(torch.finfo(stored).tiny))


def ulp(values: torch.Tensor, stored: torch.dtype) -> torch.Tensor:
    """The spacing of ``stored``'s numbers at each value (float64, same shape as ``values``).

    2^(⌊log₂|w|⌋ − p), and the subnormal spacing 2^(e_min − p) for |w| below the smallest
    normal number (zero included). ``values`` should be exactly representable in ``stored``
    (e.g. the weights of a checkpoint stored in it).

    >>> ulp(torch.tensor([1.0, 1.5, 3.0, -0.25]), torch.bfloat16).tolist()
    [0.0078125, 0.0078125, 0.015625, 0.001953125]
    """
    p, e_min = _bits(stored)
    w = values.detach().to(torch.float64).abs()
    exponent = torch.frexp(w).exponent - 1  # ⌊log₂|w|⌋ for w > 0
    exponent = torch.where(w > 0, exponent.clamp_min(e_min), torch.full_like(exponent, e_min))
    return torch.ldexp(torch.ones_like(w), exponent - p)


def rounding_variance(values: torch.Tensor, stored: torch.dtype) -> torch.Tensor:
    """ulp(w)²/12 of each value: the variance of its rounding error in ``stored`` (float64, same shape).

    >>> rounding_variance(torch.tensor([1.0, 3.0]), torch.bfloat16) * 12 * 2 ** 14
    tensor([1., 4.], dtype=torch.float64)
    """
    return ulp(values, stored).square_().div_(12.0)


def rounding_noise_sq(values: torch.Tensor, stored: torch.dtype) -> float:
    """Σ ulp(w)²/12 over ``values``: the expected squared norm of their rounding errors in ``stored``.

    ``values`` may be in any float dtype that holds them exactly (a bfloat16 tensor, or its
    float32 copy); squared units of the weights. One pass: masking a float's mantissa bits off
    leaves 2^⌊log₂|w|⌋ exactly, whose squares sum (in the container's precision, ~1e-6 relative)
    to Σ ulp²·4^p.

    >>> rounding_noise_sq(torch.full((12,), 1.0), torch.bfloat16) == 12 * 2.0 ** -14 / 12
    True
    """
    if values.numel() == 0:
        return 0.0
    p, e_min = _bits(stored)
    container = torch.float64 if values.dtype == torch.float64 else torch.float32
    int_view, shift, mask, _ = _LAYOUT[container]
    flat = values.detach().reshape(-1).to(container).contiguous()
    powers = (flat.view(int_view) & (mask << shift)).view(container)  # 2^⌊log₂|w|⌋, 0 for zero and subnormals
    powers = powers.clamp_min_(2.0 ** e_min)  # below the stored dtype's normal range its spacing is constant
    return float(torch.dot(powers, powers)) * 4.0 ** -p / 12.0


def noise_edge(row_variance_max: float, col_variance_max: float) -> float:
    """√(max_i Σ_j v_ij) + √(max_j Σ_i v_ij): where the singular values of independent noise of
    element variances v end, from its largest row and column variance sums (units of the weights).

    For identically distributed noise of standard deviation s (m×n) the sums are s²n and s²m,
    and this is the Marchenko–Pastur edge s·(√m + √n):

    >>> noise_edge(4.0 * 36, 4.0 * 4)  # s = 2, m = 4, n = 36
    16.0
    """
    return math.sqrt(max(row_variance_max, 0.0)) + math.sqrt(max(col_variance_max, 0.0))


def factored_noise(B: torch.Tensor, A: torch.Tensor, scale: float, stored_b: torch.dtype,
                   stored_a: torch.dtype) -> Tuple[float, float]:
    """Rounding noise of a LoRA update scale·B·A (B: m×r, A: r×n) from the rounding of its factors.

    To first order the noise is scale·(δB·A + B·δA), with δB, δA the factors' independent
    rounding errors (element variances v_B, v_A). Returns (noise_fro, edge): its expected
    Frobenius norm, scale·√(Σ_ij v_B,ij‖A_j,:‖² + Σ_jk ‖B_:,j‖² v_A,jk), and a bound on its
    largest singular value, scale·(edge(v_B)·‖A‖₂ + ‖B‖₂·edge(v_A)) with :func:`noise_edge`.
    """
    B64, A64 = B.detach().to(torch.float64), A.detach().to(torch.float64)
    if B64.numel() == 0 or A64.numel() == 0:
        return 0.0, 0.0
    v_b, v_a = rounding_variance(B64, stored_b), rounding_variance(A64, stored_a)
    fro_sq = float((v_b.sum(dim=0) * A64.square().sum(dim=1)).sum() + (B64.square().sum(dim=0) * v_a.sum(dim=1)).sum())
    edge_b = noise_edge(float(v_b.sum(dim=1).max()), float(v_b.sum(dim=0).max()))
    edge_a = noise_edge(float(v_a.sum(dim=1).max()), float(v_a.sum(dim=0).max()))
    spectral_a = float(torch.linalg.matrix_norm(A64, ord=2))
    spectral_b = float(torch.linalg.matrix_norm(B64, ord=2))
    return abs(scale) * math.sqrt(fro_sq), abs(scale) * (edge_b * spectral_a + spectral_b * edge_a)
