"""Private helpers shared by the geometry modules: working dtype and shape checks.

CPU SVD and QR have no bf16/fp16 kernels, and half precision is too coarse for
angles anyway, so every half-precision tensor is upcast (one tensor at a time)
to float32; float64 stays float64. Results carry no autograd graph: this is a
measuring toolkit, and model parameters often arrive with ``requires_grad``.
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["working_dtype", "to_working", "require_matrix"]


def working_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype the math runs in: float64 if any input is float64, else float32."""
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise ValueError(f"complex tensors are not supported (got {t.dtype})")
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def to_working(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Detach and cast all tensors to their common working dtype (no copy when already there)."""
    dtype = working_dtype(*tensors)
    return tuple(t.detach().to(dtype) for t in tensors)


def require_matrix(name: str, t: object) -> None:
    """Raise unless ``t`` is a 2-D tensor; the message shows the offending shape."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
