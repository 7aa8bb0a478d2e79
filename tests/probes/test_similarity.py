import math

import pytest
import torch

from spurious_diag.probes.similarity import (debiased_linear_cka, first_pc_angle_deg, linear_cka, mean_shift_rel,
                                             unbiased_hsic, unbiased_hsic_gram)


def _data(n=64, d=12, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d, seed=1):
    return torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).Q


def test_cka_of_identical_inputs_is_one_and_invariant_to_scale_and_rotation():
    x = _data()
    q = _orthogonal(x.shape[1])
    for y in (x, 7.5 * x, x @ q, 0.01 * x @ q):
        assert linear_cka(x, y) == pytest.approx(1.0, abs=1e-12)
        assert debiased_linear_cka(x, y) == pytest.approx(1.0, abs=1e-12)


def test_cka_of_independent_inputs_is_small_and_debiased_is_smaller():
    x, y = _data(n=200, d=20, seed=0), _data(n=200, d=20, seed=5)
    plain, debiased = linear_cka(x, y), debiased_linear_cka(x, y)
    assert 0.0 < plain < 0.2
    assert abs(debiased) < plain


def test_feature_space_unbiased_hsic_matches_the_gram_reference():
    x, y = _data(n=30, d=6, seed=2), _data(n=30, d=9, seed=3) + 2.0  # an offset must not matter
    reference = unbiased_hsic_gram(x @ x.T, y @ y.T)
    assert unbiased_hsic(x, y) == pytest.approx(reference, rel=1e-10, abs=1e-12)
    assert unbiased_hsic(x, x) == pytest.approx(unbiased_hsic_gram(x @ x.T, x @ x.T), rel=1e-10)


def test_mean_shift_and_first_pc_angle_on_constructed_data():
    x = _data(n=500, d=4)
    x[:, 0] *= 10.0  # first principal direction = e0
    assert mean_shift_rel(x, x) == 0.0
    theta = math.radians(30.0)
    rot = torch.eye(4, dtype=torch.float64)
    rot[:2, :2] = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    y = x @ rot.T  # rotates e0 by 30 degrees in the (e0, e1) plane
    assert first_pc_angle_deg(x, y) == pytest.approx(30.0, abs=0.05)  # sample PC1 ≈ e0
    assert first_pc_angle_deg(x, -y) == first_pc_angle_deg(x, y)  # sign-aligned
    assert math.isnan(first_pc_angle_deg(torch.ones(5, 4), x[:5]))  # no variance: undefined
    m = torch.ones(3, 2)
    assert mean_shift_rel(m, m + torch.tensor([3.0, 4.0])) == pytest.approx(5.0 / math.sqrt(2.0))


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        linear_cka(torch.zeros(5, 3), torch.zeros(4, 3))
