"""Update sizes and cosines against float64 references and known geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spurious_diag.geometry import UpdateSizes, random_cosine_scale, update_cosine, update_sizes


def _randn(*shape: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_sizes_match_float64_reference():
    delta, base = 1e-3 * _randn(300, 200, seed=1), _randn(300, 200, seed=2)
    sizes = update_sizes(delta, base)
    d, b = delta.double(), base.double()
    fro = d.square().sum().sqrt().item()
    assert isinstance(sizes, UpdateSizes) and all(isinstance(x, float) for x in (sizes.fro, sizes.rms, sizes.rel))
    assert sizes.fro == pytest.approx(fro, rel=1e-6)
    assert sizes.rms == pytest.approx(fro / math.sqrt(60_000), rel=1e-6)
    assert sizes.rel == pytest.approx(fro / b.square().sum().sqrt().item(), rel=1e-6)


def test_rel_is_nan_without_a_usable_base():
    delta = _randn(4, 3, seed=3)
    assert math.isnan(update_sizes(delta).rel)
    assert math.isnan(update_sizes(delta, torch.zeros(4, 3)).rel)
    zero = update_sizes(torch.zeros(4, 3), delta)
    assert zero.fro == zero.rms == zero.rel == 0.0


def test_bias_vectors_and_half_precision_work():
    bias = _randn(64, seed=4)
    assert update_sizes(bias).fro == pytest.approx(torch.linalg.vector_norm(bias.double()).item(), rel=1e-6)
    delta = _randn(128, 64, seed=5).bfloat16()
    sizes = update_sizes(delta, base=torch.ones(128, 64, dtype=torch.float16))
    reference = delta.double().square().sum().sqrt().item()  # the same bf16 values, summed in float64
    assert sizes.fro == pytest.approx(reference, rel=1e-6)
    assert sizes.rel == pytest.approx(reference / math.sqrt(128 * 64), rel=1e-6)


def test_base_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        update_sizes(torch.ones(4, 3), torch.ones(3, 4))


def test_cosine_of_identical_scaled_opposite_and_orthogonal_updates():
    d = _randn(30, 20, seed=6)
    assert update_cosine(d, d) == pytest.approx(1.0, abs=1e-6)
    assert update_cosine(d, 5.0 * d) == pytest.approx(1.0, abs=1e-6)
    assert update_cosine(d, -0.1 * d) == pytest.approx(-1.0, abs=1e-6)
    top, bottom = d.clone(), d.clone()
    top[15:] = 0
    bottom[:15] = 0
    assert update_cosine(top, bottom) == 0.0
    assert math.isnan(update_cosine(d, torch.zeros_like(d)))


def test_cosine_matches_float64_reference_across_dtypes():
    d1, d2 = _randn(50, 40, seed=7), _randn(50, 40, seed=8) + 0.3 * _randn(50, 40, seed=7)
    reference = torch.nn.functional.cosine_similarity(d1.double().flatten(), d2.double().flatten(), dim=0).item()
    assert update_cosine(d1, d2) == pytest.approx(reference, abs=1e-6)
    assert update_cosine(d1.double(), d2) == pytest.approx(reference, abs=1e-12)  # float64 wins
    assert update_cosine(d1.bfloat16(), d2.bfloat16()) == pytest.approx(reference, abs=1e-2)


def test_cosine_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 6\).*\(6, 2\)"):
        update_cosine(torch.ones(2, 6), torch.ones(6, 2))


def test_random_cosine_scale_matches_monte_carlo():
    numel, pairs = 1000, 1000
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((pairs, numel)), rng.standard_normal((pairs, numel))
    observed = np.mean([abs(update_cosine(torch.from_numpy(a), torch.from_numpy(b))) for a, b in zip(x, y)])
    assert random_cosine_scale(numel) == pytest.approx(math.sqrt(2 / (math.pi * numel)))
    assert observed == pytest.approx(random_cosine_scale(numel), rel=0.08)
    with pytest.raises(ValueError):
        random_cosine_scale(0)


def test_sizes_and_cosine_of_large_float32_updates_agree_with_float64():
    """2048×2048 float32: one float32 product over all 4M elements was 8e-5 / 1.1e-4 off; piecewise
    products added in float64 stay within 1e-6 (about 0.3% of the random-direction cosine there)."""
    g = torch.Generator().manual_seed(0)
    d1 = torch.randn(2048, 2048, generator=g)
    d2 = 0.3 * d1 + torch.randn(2048, 2048, generator=g)
    base = torch.randn(2048, 2048, generator=g) + 3.0
    exact_cos = float((d1.double() * d2.double()).sum() / (d1.double().norm() * d2.double().norm()))
    assert abs(update_cosine(d1, d2) - exact_cos) < 1e-6
    sizes = update_sizes(d1, base)
    assert sizes.fro == pytest.approx(float(d1.double().norm()), rel=1e-6)
    assert sizes.rel == pytest.approx(float(d1.double().norm() / base.double().norm()), rel=1e-6)
