"""The rounding noise of one checkpoint's tensor, measured while the Gram pass streams its rows
(:mod:`.floors` combines it per update).

For each fused part it gathers what the noise floor of an update needs (DESIGN.md §2b,
:mod:`spurious_diag.geometry.noise`): the total rounding variance Σ v, and the largest row and
column sums of v, whose square roots add up to the edge of the noise's singular values.

v = ulp(w)²/12 depends on the exponent of w, and v/w² on its mantissa only, which does not care
which row or column w sits in. So v follows from the exact sums of w², which cost one pass over
the values: κ = Σv / Σw², taken exactly on a systematic sample of rows (every ``stride``-th,
about :data:`SAMPLE_ELEMENTS` values), times Σw² over all rows, over each row and over each
column (a ratio estimator). On SmolLM2-135M's weights (layers 0, 3, 15, 29 and the embedding,
bf16) it came within 1.3% of the exact total and 5% of the exact edge (the row and column
maxima alone: 9%, and 24% for one 192-row k_proj). Sampling the column sums of v directly
instead was off by up to 33% where a fused part got few of the sampled rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from ..geometry.noise import MANTISSA_BITS

__all__ = ["NoiseStats", "NoiseAccumulator", "SAMPLE_ELEMENTS"]

# Elements sampled per tensor and checkpoint for the exact per-element variances (κ only).
SAMPLE_ELEMENTS = 2**15
# Values squared at a time for the row and column sums of w² (1 MiB of float32: a piece stays in
# cache for both sums; a reused buffer, since fresh allocations this size cost page faults).
_SQUARE_ELEMENTS = 2**18
# Mask of the exponent bits of a float32 / float64, as a signed integer of the same width.
_EXPONENT_BITS = {torch.float32: (torch.int32, 0x7F800000), torch.float64: (torch.int64, 0x7FF0000000000000)}
# Largest power of two whose square the container still holds.
_MAX_POWER = {torch.float32: 2.0**63, torch.float64: 2.0**511}


@dataclass
class NoiseStats:
    """Rounding-noise statistics of one checkpoint's tensor, per fused part (P), float64.

    Attributes:
        total: Σ v, the expected squared norm of the rounding errors (squared units of the weights).
        row_max, col_max: the largest sum of v over a row and over a column of the part in (out, in)
            orientation; √row_max + √col_max is where the noise's singular values end.
    """

    total: torch.Tensor
    row_max: torch.Tensor
    col_max: torch.Tensor

    @classmethod
    def zeros(cls, n_parts: int) -> "NoiseStats":
        """No rounding (a tensor of a dtype without a rounding model)."""
        z = torch.zeros(n_parts, dtype=torch.float64)
        return cls(z, z.clone(), z.clone())


def _variance_map(x: torch.Tensor, stored: torch.dtype) -> torch.Tensor:
    """ulp(w)²/12 of every value of x (float32 or float64 holding values of ``stored``), in x's dtype.

    Masking the mantissa off leaves 2^⌊log₂|w|⌋ exactly; below the stored dtype's normal range
    (zero included) its spacing is constant.
    """
    return _squared_powers(x, stored).mul_(_unit(stored))


def _squared_powers(x: torch.Tensor, stored: torch.dtype) -> torch.Tensor:
    """(2^⌊log₂|w|⌋)² of every value of x, clamped to ``stored``'s normal range, in x's dtype.

    Times :func:`_unit` it is the rounding variance ulp(w)²/12; the audit sums it first and scales
    the sums (one pass less over the values).
    """
    int_view, mask = _EXPONENT_BITS[x.dtype]
    powers = (x.view(int_view) & mask).view(x.dtype)
    return powers.clamp_(torch.finfo(stored).tiny, _MAX_POWER[x.dtype]).square_()


def _unit(stored: torch.dtype) -> float:
    """ulp(w)²/12 ÷ (2^⌊log₂|w|⌋)² in ``stored``: 4^−p/12, p its mantissa bits."""
    return 4.0 ** -MANTISSA_BITS[stored] / 12.0


def _square_sums(x: torch.Tensor, row_ids: Optional[torch.Tensor], n_groups: int,
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(Σ_j x_ij² per row (R,), Σ_i x_ij² per column and row group (G×C)), reduced in x's dtype.

    One pass of squares over row pieces of about :data:`_SQUARE_ELEMENTS` values, each squared into
    one reused buffer and summed both ways while in cache; ``row_ids`` (R,) assigns rows to
    ``n_groups`` groups (None: one group).
    """
    n_rows, n_cols = x.shape
    step = max(1, _SQUARE_ELEMENTS // max(n_cols, 1))
    rows = x.new_empty(n_rows)
    cols = x.new_zeros(n_groups, n_cols)
    buffer = x.new_empty(min(step, n_rows), n_cols)
    for start in range(0, n_rows, step):
        piece = x[start : start + step]
        squares = torch.square(piece, out=buffer[: piece.shape[0]])
        torch.sum(squares, dim=1, out=rows[start : start + piece.shape[0]])
        if row_ids is None:
            cols[0] += squares.sum(dim=0)
        else:
            cols.index_add_(0, row_ids[start : start + piece.shape[0]], squares)
    return rows, cols


class NoiseAccumulator:
    """Streams the row chunks of one checkpoint's tensor into :class:`NoiseStats`.

    Args:
        stored: the dtype the checkpoint stores the tensor in (the rounding it carries).
        n_rows, n_cols: the stored tensor as a matrix (rows of the first axis; a vector is n×1).
        part_ids: fused-part index of each output feature; out_axis: 0 when the output features
            are the stored rows, 1 when they are the columns (a Conv1D weight).

    Sums are reduced in the chunk's dtype (pairwise: float32 holds them to ~1e-6, and a float64
    reduction of a float32 chunk runs ~20× slower) and added up in float64. The sampled
    variances are summed in units of (2^⌊log₂|w|⌋)² and scaled once, in :meth:`finish`.
    """

    def __init__(self, stored: torch.dtype, n_rows: int, n_cols: int, part_ids: torch.Tensor, out_axis: int):
        self.stored = stored if stored in MANTISSA_BITS else None
        self.part_ids, self.out_axis = part_ids, out_axis
        self.n_parts = int(part_ids.max()) + 1 if part_ids.numel() else 1
        self.stride = max(1, n_rows // max(1, SAMPLE_ELEMENTS // max(n_cols, 1)))
        self.by_rows = out_axis == 0 and self.n_parts > 1  # fused parts are groups of stored rows
        # Per part (P): Σ w² over all rows, the largest stored-row sum of w², Σ v and Σ w² over the sampled rows.
        self.w2 = torch.zeros(self.n_parts, dtype=torch.float64)
        self.row_w2 = torch.zeros(self.n_parts, dtype=torch.float64)
        self.sample_v = torch.zeros(self.n_parts, dtype=torch.float64)
        self.sample_w2 = torch.zeros(self.n_parts, dtype=torch.float64)
        # Stored-column sums of w²: per part (P×C) when the parts are row groups, else (1×C).
        self.col_w2 = torch.zeros(self.n_parts if self.by_rows else 1, n_cols, dtype=torch.float64)
        # One-hot (C×P) of the part of each stored column, when the parts are columns (a fused Conv1D weight).
        self.column_parts = (torch.nn.functional.one_hot(part_ids, self.n_parts).to(torch.float64)
                             if out_axis == 1 and self.n_parts > 1 else None)

    def add(self, block: torch.Tensor, start: int) -> Optional[torch.Tensor]:
        """Add rows ``start : start + len(block)`` of the stored tensor (working dtype; non-finite values
        zeroed); return their Σ w² per part (P, float64), or None for a dtype without a rounding model."""
        if self.stored is None:
            return None
        x = block.reshape(block.shape[0], -1)
        if self.stored == torch.float64 and x.dtype != torch.float64:
            x = x.to(torch.float64)  # float64 spacings underflow in float32
        first = (-start) % self.stride
        p2 = _squared_powers(x[first :: self.stride], self.stored)  # sampled rows (S×C), v in units
        ids = self.part_ids[start : start + x.shape[0]] if self.by_rows else None
        row_w2, col_w2 = _square_sums(x, ids, self.col_w2.shape[0])
        self.col_w2 += col_w2.to(torch.float64)
        if self.column_parts is not None:  # each stored row splits over the parts
            onehot = self.column_parts
            part_w2 = (x.square().to(torch.float64) @ onehot)  # R×P
            self.sample_v += p2.sum(dim=0).to(torch.float64) @ onehot
            self.sample_w2 += part_w2[first :: self.stride].sum(dim=0)
            self.row_w2 = torch.maximum(self.row_w2, part_w2.max(dim=0).values)
            chunk_w2 = part_w2.sum(dim=0)
        elif ids is not None:  # each stored row belongs to one part
            wide = row_w2.to(torch.float64)
            sample_ids = ids[first :: self.stride]
            self.sample_v.index_add_(0, sample_ids, p2.sum(dim=1).to(torch.float64))
            self.sample_w2.index_add_(0, sample_ids, wide[first :: self.stride])
            self.row_w2.scatter_reduce_(0, ids, wide, "amax")
            chunk_w2 = torch.zeros(self.n_parts, dtype=torch.float64).index_add_(0, ids, wide)
        else:
            self.sample_v += p2.sum().to(torch.float64)
            self.sample_w2 += row_w2[first :: self.stride].sum().to(torch.float64)
            self.row_w2 = torch.maximum(self.row_w2, row_w2.max().to(torch.float64))
            chunk_w2 = row_w2.sum().to(torch.float64).reshape(1)
        self.w2 += chunk_w2
        return chunk_w2

    def finish(self) -> NoiseStats:
        """The :class:`NoiseStats` in (out, in) orientation: rows are output features."""
        if self.stored is None:
            return NoiseStats.zeros(self.n_parts)
        sample_v = self.sample_v * _unit(self.stored)
        sampled = self.sample_w2 > 0
        kappa = torch.where(sampled, sample_v / self.sample_w2.clamp_min(1e-300), torch.zeros_like(sample_v))
        total = torch.where(sampled, kappa * self.w2, sample_v * self.stride)
        stored_rows = kappa * self.row_w2  # max over stored rows of Σ_j v
        if self.column_parts is not None:
            col_max = (self.col_w2.reshape(-1, 1) * self.column_parts).max(dim=0).values
        else:
            col_max = self.col_w2.max(dim=1).values  # P (or 1)
        stored_cols = kappa * col_max
        if self.out_axis == 1:  # Conv1D: the stored rows are the inputs, the oriented columns
            return NoiseStats(total, stored_cols, stored_rows)
        return NoiseStats(total, stored_rows, stored_cols)
