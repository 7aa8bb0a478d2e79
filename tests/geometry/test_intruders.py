"""Intruder dimensions on weights whose singular structure is known by construction."""

from __future__ import annotations

import math

import pytest
import torch

from spurious_diag.geometry import intruder_dimensions

from .matrices import random_orthonormal, with_spectrum

M, N = 96, 64


def _planted_spike(alpha: float):
    """W_before = U diag(s) Vᵀ with s = 10 … 1 (well separated); W_after adds α·w·v_lastᵀ.

    w is orthogonal to every left singular vector of W_before, and v_last is the
    right vector of its smallest value (s = 1), so W_after's SVD is known: W_before's
    triplets except the last, plus value √(1 + α²) with left vector ∝ u_last + α w,
    whose largest |cos| with W_before's vectors is 1/√(1 + α²).
    """
    q = random_orthonormal(M, N + 1, seed=1)
    u, w = q[:, :N], q[:, N]
    v = random_orthonormal(N, N, seed=2)
    s = torch.linspace(10.0, 1.0, N, dtype=torch.float64)
    before = with_spectrum(u, s, v)
    after = before + alpha * torch.outer(w, v[:, -1])
    return before, after, s


def test_a_large_orthogonal_spike_is_the_one_intruder():
    before, after, _ = _planted_spike(alpha=30.0)
    result = intruder_dimensions(before, after)
    assert result.count == 1 and result.indices == (0,)
    assert result.max_cos[0] == pytest.approx(1 / math.sqrt(1 + 30.0**2), abs=1e-9)
    assert result.k == 10 and len(result.top_max_cos) == 10
    assert min(result.top_max_cos[1:]) == pytest.approx(1.0, abs=1e-9)


def test_intruder_index_is_its_rank_position_and_eps_is_strict():
    before, after, s = _planted_spike(alpha=9.5)  # √(1 + 9.5²) = 9.552 falls between s[3] and s[4]
    assert s[3] > math.sqrt(1 + 9.5**2) > s[4]
    cos = 1 / math.sqrt(1 + 9.5**2)  # 0.1047
    assert intruder_dimensions(before, after).indices == (4,)
    assert intruder_dimensions(before, after, eps=0.11).indices == (4,)
    assert intruder_dimensions(before, after, eps=0.10).count == 0  # 0.1047 is not below 0.10
    assert intruder_dimensions(before, after, k=4).count == 0  # outside the top 4
    assert max(intruder_dimensions(before, after).max_cos) == pytest.approx(cos, abs=1e-9)


def test_right_side_finds_the_spike_of_the_transposed_weights():
    before, after, _ = _planted_spike(alpha=30.0)
    assert intruder_dimensions(before.T, after.T, side="right").indices == (0,)


def test_scaled_weights_have_no_intruders():
    before = torch.randn(64, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    result = intruder_dimensions(before, before * 1.01)
    assert result.count == 0 and result.indices == () and result.max_cos == ()
    assert min(result.top_max_cos) == pytest.approx(1.0, abs=1e-8)


def test_options_k_cap_half_precision_and_logging_sink():
    before, after, _ = _planted_spike(alpha=30.0)
    lines = []
    result = intruder_dimensions(before.bfloat16(), after.bfloat16(), k=500, logging_sink=lines.append)
    assert result.k == N and result.indices[:1] == (0,)
    assert len(lines) == 1 and "top 64" in lines[0] and f"{result.count} of" in lines[0]


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match=r"\(5, 4\).*\(4, 5\)"):
        intruder_dimensions(torch.ones(5, 4), torch.ones(4, 5))
    with pytest.raises(ValueError, match="eps"):
        intruder_dimensions(torch.eye(3), torch.eye(3), eps=0.0)
    with pytest.raises(ValueError, match="k must"):
        intruder_dimensions(torch.eye(3), torch.eye(3), k=0)
