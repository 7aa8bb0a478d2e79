"""Principal angles, overlaps and one-sided angles against planted ground truth and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spurious_diag.geometry import (
    SingularBasis,
    basis_angles,
    compare_bases,
    one_sided_angles,
    principal_angles,
    random_overlap,
    subspace_overlap,
    top_singular_basis,
)

from .matrices import planted_pair, random_orthonormal, with_spectrum

DEG = math.pi / 180


@pytest.mark.parametrize("degrees", [0.0, 30.0, 60.0, 90.0])
def test_planted_single_angle(degrees):
    u1, u2 = planted_pair(40, [degrees * DEG] * 3, seed=1)
    angles = principal_angles(u1, u2)
    assert angles.dtype == torch.float64
    torch.testing.assert_close(angles, torch.full((3,), degrees * DEG, dtype=torch.float64), atol=1e-9, rtol=0)


def test_planted_mixed_and_random_angles_come_back_sorted():
    rng = np.random.default_rng(7)
    planted = [0.0, 90 * DEG, 30 * DEG, 60 * DEG] + list(rng.uniform(0, math.pi / 2, size=6))
    u1, u2 = planted_pair(64, planted, seed=2)
    angles = principal_angles(u1, u2)
    torch.testing.assert_close(angles, torch.tensor(sorted(planted), dtype=torch.float64), atol=1e-9, rtol=0)


def test_tiny_angles_are_resolved_from_sines():
    # arccos of a cosine cannot tell 1e-9 rad from 0 (1 − θ²/2 rounds to 1).
    planted = [1e-9, 1e-6, 1e-3]
    u1, u2 = planted_pair(30, planted, seed=3)
    expected = torch.tensor(planted, dtype=torch.float64)
    torch.testing.assert_close(principal_angles(u1, u2), expected, rtol=1e-6, atol=0)


def test_float32_planted_zero_is_below_1e5_rad():
    u1, u2 = planted_pair(100, [0.0, 0.0, 20 * DEG], seed=4)
    angles = principal_angles(u1.float(), u2.float())
    assert angles.dtype == torch.float32
    assert angles[:2].abs().max() < 1e-5  # arccos alone gives ~3e-4 here
    assert abs(angles[2].item() - 20 * DEG) < 1e-5


def test_half_precision_inputs_are_upcast():
    u1, u2 = planted_pair(32, [10 * DEG, 50 * DEG], seed=5)
    angles = principal_angles(u1.bfloat16(), u2.half())
    assert angles.dtype == torch.float32
    expected = torch.tensor([10 * DEG, 50 * DEG], dtype=torch.float64)
    torch.testing.assert_close(angles.double(), expected, atol=2e-2, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 24),
    p=st.integers(1, 27),
    q=st.integers(1, 27),
    seed=st.integers(0, 2**31 - 1),
    log_scale=st.floats(-6, 6),
)
def test_matches_scipy_subspace_angles(m, p, q, seed, log_scale):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, p)) * 10.0**log_scale
    b = rng.standard_normal((m, q))
    expected = np.sort(scipy.linalg.subspace_angles(a, b))
    ours = principal_angles(torch.from_numpy(a), torch.from_numpy(b))
    assert ours.shape == expected.shape == (min(m, p, q),)
    # SciPy applies its sine/cosine mask in reversed order, so its near-0 angles next to
    # large ones carry arccos error (~1.5e-8); ours are checked tighter by the planted tests.
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-7, rtol=0)
    assert torch.all(ours[1:] >= ours[:-1])


def test_invariant_to_rotation_scaling_and_mixing_of_bases():
    u1, u2 = planted_pair(50, [5 * DEG, 25 * DEG, 70 * DEG], seed=6)
    reference = principal_angles(u1, u2)
    rot1, rot2 = random_orthonormal(3, 3, seed=7), random_orthonormal(3, 3, seed=8)
    torch.testing.assert_close(principal_angles(u1 @ rot1, u2 @ rot2), reference, atol=1e-10, rtol=0)
    torch.testing.assert_close(principal_angles(1e3 * u1, -1e-4 * u2), reference, atol=1e-10, rtol=0)
    # Non-orthonormal spanning sets of the same spaces (well-conditioned mixing).
    noise = torch.randn(3, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    mix = torch.eye(3, dtype=torch.float64) + 0.3 * noise
    torch.testing.assert_close(principal_angles(u1 @ mix, u2), reference, atol=1e-10, rtol=0)
    # Symmetric in its arguments.
    torch.testing.assert_close(principal_angles(u2, u1), reference, atol=1e-12, rtol=0)


def test_length_is_min_of_ranks_for_rank_deficient_inputs():
    u1, u2 = planted_pair(20, [0.0, 40 * DEG, 80 * DEG], seed=10)
    deficient = torch.cat([u1, u1[:, :1] * 2.0, torch.zeros(20, 2, dtype=torch.float64)], dim=1)  # 6 columns, rank 3
    wide = torch.cat([u2, random_orthonormal(20, 4, seed=11)], dim=1)  # rank 7
    angles = principal_angles(deficient, wide)
    assert angles.shape == (3,)
    expected = torch.tensor([0.0, 40 * DEG, 80 * DEG], dtype=torch.float64)
    torch.testing.assert_close(principal_angles(deficient, u2), expected, atol=1e-9, rtol=0)


def test_zero_matrix_gives_empty_angles_and_nan_mean():
    u1, _ = planted_pair(10, [0.0, 0.0], seed=12)
    angles = principal_angles(torch.zeros(10, 3), u1)
    assert angles.shape == (0,)
    assert math.isnan(angles.mean().item())


def test_bad_shapes_raise_value_error_naming_them():
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(6, 3\)"):
        principal_angles(torch.randn(5, 2), torch.randn(6, 3))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        principal_angles(torch.randn(5), torch.randn(5, 3))


def test_overlap_identical_orthogonal_contained_and_planted():
    u1, u2 = planted_pair(30, [20 * DEG, 45 * DEG, 80 * DEG], seed=13)
    assert subspace_overlap(u1, u1) == pytest.approx(1.0, abs=1e-12)
    q = random_orthonormal(30, 8, seed=14)
    assert subspace_overlap(q[:, :4], q[:, 4:]) == pytest.approx(0.0, abs=1e-12)
    assert subspace_overlap(q[:, :3], q) == pytest.approx(1.0, abs=1e-12)  # contained: min(r1, r2) = 3
    expected = np.mean(np.cos(np.deg2rad([20.0, 45.0, 80.0])) ** 2)
    assert subspace_overlap(u1, u2) == pytest.approx(expected, abs=1e-12)
    assert math.isnan(subspace_overlap(u1, u1[:, :0]))


def test_random_overlap_matches_monte_carlo():
    m, r1, r2, samples = 64, 4, 8, 300
    observed = np.mean(
        [
            subspace_overlap(random_orthonormal(m, r1, 2 * s), random_orthonormal(m, r2, 2 * s + 1))
            for s in range(samples)
        ]
    )
    assert random_overlap(m, r1, r2) == 8 / 64
    assert observed == pytest.approx(random_overlap(m, r1, r2), rel=0.07)


def test_random_overlap_validates_dimensions():
    assert math.isnan(random_overlap(10, 0, 3))
    with pytest.raises(ValueError, match="r1=11"):
        random_overlap(10, 11, 3)


def test_one_sided_angles_follow_column_order():
    planted = [60 * DEG, 10 * DEG, 90 * DEG, 0.0]
    u1, u2 = planted_pair(40, planted, seed=15)
    angles = one_sided_angles(u1, u2)
    torch.testing.assert_close(angles, torch.tensor(planted, dtype=torch.float64), atol=1e-12, rtol=0)
    # Against a larger U1 each column's angle can only shrink, and column scale does not matter.
    wider = torch.cat([u1, u2[:, :1]], dim=1)
    wider = torch.linalg.qr(wider).Q
    shrunk = one_sided_angles(wider, 3.0 * u2)
    assert shrunk[0] == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(shrunk[1:], angles[1:], atol=1e-12, rtol=0)


def test_one_sided_angles_zero_column_is_nan():
    u1, u2 = planted_pair(12, [30 * DEG, 30 * DEG], seed=16)
    u2 = torch.cat([u2, torch.zeros(12, 1, dtype=torch.float64)], dim=1)
    angles = one_sided_angles(u1, u2)
    assert torch.isnan(angles[2]) and not torch.isnan(angles[:2]).any()


def test_basis_angles_of_updates_with_planted_left_spaces():
    planted = [3 * DEG, 35 * DEG, 65 * DEG, 88 * DEG]
    u1, u2 = planted_pair(80, planted, seed=17)
    v = random_orthonormal(60, 4, seed=18)
    s = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    b1 = top_singular_basis(with_spectrum(u1, s, v), rank=4)
    b2 = top_singular_basis(with_spectrum(u2, 7.0 * s.flip(0), v), rank=4)
    torch.testing.assert_close(basis_angles(b1, b2), torch.tensor(planted, dtype=torch.float64), atol=1e-9, rtol=0)
    assert basis_angles(b1, b2, side="right").abs().max() < 1e-9
    torch.testing.assert_close(basis_angles(b1, b2), principal_angles(b1.U, b2.U), atol=1e-12, rtol=0)


def test_basis_angles_rejects_mismatched_sides():
    b1 = top_singular_basis(torch.randn(8, 5), rank=2)
    b2 = top_singular_basis(torch.randn(7, 5), rank=2)
    assert basis_angles(b1, b2, side="right").shape == (2,)
    with pytest.raises(ValueError, match=r"\(8, 2\).*\(7, 2\)"):
        basis_angles(b1, b2, side="left")
    with pytest.raises(ValueError, match="side"):
        basis_angles(b1, b2, side="up")


@pytest.mark.parametrize("r1, r2", [(6, 6), (6, 3), (3, 6), (0, 4), (4, 0)])
@pytest.mark.parametrize("side", ["left", "right"])
def test_compare_bases_equals_the_three_separate_measures(r1, r2, side):
    """One shared pass gives what basis_angles, subspace_overlap and one_sided_angles give apart."""
    def basis(r: int, seed: int) -> SingularBasis:
        u, v = random_orthonormal(50, r, seed), random_orthonormal(40, r, seed + 1)
        return SingularBasis(u, torch.linspace(3.0, 1.0, r, dtype=torch.float64), v.mT, 20.0)

    b1, b2 = basis(r1, 31), basis(r2, 41)
    compared = compare_bases(b1, b2, side)
    u1, u2 = b1.vectors(side), b2.vectors(side)
    torch.testing.assert_close(compared.angles, basis_angles(b1, b2, side), atol=1e-12, rtol=0)
    torch.testing.assert_close(compared.one_sided, one_sided_angles(u1, u2), atol=1e-12, rtol=0, equal_nan=True)
    if min(r1, r2) == 0:
        assert compared.angles.numel() == 0 and math.isnan(compared.overlap)
    else:
        assert compared.overlap == pytest.approx(subspace_overlap(u1, u2), abs=1e-12)

