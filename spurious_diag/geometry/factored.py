"""A LoRA update ΔW = scale · B @ A kept in factored form.

Sizes, inner products and the SVD all come from the factors: with thin QRs
B = Q_B R_B and Aᵀ = Q_A R_A, ΔW = Q_B (scale · R_B R_Aᵀ) Q_Aᵀ, so the SVD of
the small core C = scale · R_B R_Aᵀ (at most r×r) gives the SVD of ΔW, at
cost O((m + n)·r²) instead of O(m·n·min(m, n)).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Optional, Tuple, Union

import torch

from ._tensors import require_matrix, to_working
from .spectrum import SingularBasis, truncated_basis

__all__ = ["FactoredUpdate"]


class FactoredUpdate:
    """ΔW = scale · B @ A (m×n) with B: m×r, A: r×n; never densified.

    For a PEFT LoRA adapter, B is ``lora_B.weight`` (out×r), A is
    ``lora_A.weight`` (r×in) and scale is ``lora_alpha / r`` (or
    ``lora_alpha / √r`` for rsLoRA). Factors are detached and upcast to the
    common working dtype (float32, or float64 if either factor is float64);
    they must lie on one device, where all the math happens.

    >>> B = torch.tensor([[1.0], [0.0]]); A = torch.tensor([[0.0, 2.0, 0.0]])
    >>> u = FactoredUpdate(B, A, scale=0.5)
    >>> u.shape, u.fro()
    (torch.Size([2, 3]), 1.0)
    >>> u.to_dense()
    tensor([[0., 1., 0.],
            [0., 0., 0.]])
    """

    def __init__(self, B: torch.Tensor, A: torch.Tensor, scale: float = 1.0) -> None:
        require_matrix("B", B)
        require_matrix("A", A)
        if B.shape[1] != A.shape[0]:
            raise ValueError(
                f"LoRA factors do not chain: B has shape {tuple(B.shape)} (m×r), "
                f"A has shape {tuple(A.shape)} (r×n)"
            )
        if B.device != A.device:
            raise ValueError(f"B is on {B.device} but A is on {A.device}")
        scale = float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"scale must be finite, got {scale}")
        self.B, self.A = to_working(B, A)
        self.scale = scale

    def __repr__(self) -> str:
        m, n = self.shape
        return f"FactoredUpdate({m}×{n}, rank {self.A.shape[0]}, scale={self.scale:g}, {self.dtype})"

    @property
    def shape(self) -> torch.Size:
        """torch.Size([m, n]), the shape of ΔW."""
        return torch.Size((self.B.shape[0], self.A.shape[1]))

    @property
    def dtype(self) -> torch.dtype:
        """Working dtype of the factors (float32 or float64)."""
        return self.B.dtype

    @property
    def device(self) -> torch.device:
        return self.B.device

    def numel(self) -> int:
        """m·n, the element count of ΔW."""
        m, n = self.shape
        return m * n

    @cached_property
    def _core(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q_B: m×k1, C: k1×k2, Q_A: n×k2) with ΔW = Q_B C Q_Aᵀ, k1, k2 ≤ r."""
        q_b, r_b = torch.linalg.qr(self.B)
        q_a, r_a = torch.linalg.qr(self.A.mT)
        return q_b, self.scale * (r_b @ r_a.mT), q_a

    @cached_property
    def _svd(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Full thin SVD of ΔW from the core: (U: m×k, S: k, Vh: k×n)."""
        q_b, core, q_a = self._core
        u_c, s, vh_c = torch.linalg.svd(core, full_matrices=False)
        return q_b @ u_c, s, vh_c @ q_a.mT

    def fro(self) -> float:
        """‖ΔW‖_F (units of the weights), as ‖C‖_F of the orthogonally equivalent core."""
        return float(torch.linalg.matrix_norm(self._core[1]))

    def inner(self, other: Union["FactoredUpdate", torch.Tensor]) -> float:
        """Frobenius inner product ⟨ΔW, other⟩_F with another update of the same shape (m×n).

        Factored: s₁s₂ · tr((B₁ᵀB₂)(A₂A₁ᵀ)), O((m + n)·r₁r₂). Dense other (m×n):
        s · Σ (BᵀD) ⊙ A, O(m·n·r).
        """
        if isinstance(other, FactoredUpdate):
            if other.shape != self.shape:
                raise ValueError(f"shapes differ: {tuple(self.shape)} and {tuple(other.shape)}")
            b1, a1, b2, a2 = to_working(self.B, self.A, other.B, other.A)
            return self.scale * other.scale * float(((b1.mT @ b2) * (a1 @ a2.mT)).sum())
        require_matrix("other", other)
        if other.shape != self.shape:
            raise ValueError(f"shapes differ: {tuple(self.shape)} and {tuple(other.shape)}")
        b, a, d = to_working(self.B, self.A, other)
        return self.scale * float(((b.mT @ d) * a).sum())

    def basis(
        self, rank: int = 16, *, energy: Optional[float] = None, max_rank: Optional[int] = 64,
        noise_floor: float = 0.0,
    ) -> SingularBasis:
        """Top singular basis of ΔW, exact, from the cached core SVD.

        Same rank rules as :func:`top_singular_basis`: ``rank`` triplets, or the
        energy rank (fraction ``energy`` of ‖ΔW‖²_F) capped at ``max_rank``;
        never more than the signal rank (≤ r; singular values ≤ ``noise_floor``
        dropped too). U: m×k, S: k, Vh: k×n.
        """
        u, s, vh = self._svd
        return truncated_basis(u, s, vh, float(s.double().square().sum()), rank, energy, max_rank, noise_floor)

    def transpose(self) -> "FactoredUpdate":
        """ΔWᵀ (n×m) = scale · Aᵀ Bᵀ, e.g. for GPT-2 ``Conv1D`` weights stored (in, out)."""
        return FactoredUpdate(self.A.mT, self.B.mT, self.scale)

    def take_rows(self, index: Union[slice, torch.Tensor]) -> "FactoredUpdate":
        """ΔW[index] = scale · B[index] A: one part of a fused projection (rows = output axis)."""
        return FactoredUpdate(self.B[index], self.A, self.scale)

    def to_dense(self) -> torch.Tensor:
        """scale · B @ A as an m×n tensor. For tests and small matrices only."""
        return self.scale * (self.B @ self.A)
