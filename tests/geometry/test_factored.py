"""FactoredUpdate (LoRA B·A) against its densified matrix."""

from __future__ import annotations

from dataclasses import astuple

import pytest
import torch

from spurious_diag.geometry import (
    FactoredUpdate,
    basis_angles,
    principal_angles,
    top_singular_basis,
    update_cosine,
    update_sizes,
)


def _factors(m: int, r: int, n: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, r, generator=g, dtype=dtype), torch.randn(r, n, generator=g, dtype=dtype)


@pytest.fixture
def pair():
    u1 = FactoredUpdate(*_factors(60, 6, 40, seed=1), scale=0.7)
    u2 = FactoredUpdate(*_factors(60, 4, 40, seed=2), scale=-2.5)
    return u1, u2


def test_shape_fro_and_sizes_match_dense(pair):
    u1, _ = pair
    dense = u1.to_dense()
    assert u1.shape == dense.shape == (60, 40) and u1.numel() == 2400
    assert u1.fro() == pytest.approx(torch.linalg.matrix_norm(dense).item(), rel=1e-12)
    base = torch.randn(60, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert astuple(update_sizes(u1, base)) == pytest.approx(astuple(update_sizes(dense, base)), rel=1e-12)


def test_inner_products_match_dense(pair):
    u1, u2 = pair
    d1, d2 = u1.to_dense(), u2.to_dense()
    dense_inner = torch.sum(d1 * d2).item()
    assert u1.inner(u2) == pytest.approx(dense_inner, rel=1e-12)
    assert u1.inner(d2) == pytest.approx(dense_inner, rel=1e-12)
    expected = update_cosine(d1, d2)
    assert update_cosine(u1, u2) == pytest.approx(expected, rel=1e-12)
    assert update_cosine(d1, u2) == pytest.approx(expected, rel=1e-12)
    assert update_cosine(u1, d2) == pytest.approx(expected, rel=1e-12)
    assert update_cosine(u1, u1) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_basis_matches_dense_svd(dtype, tol):
    u = FactoredUpdate(*_factors(80, 8, 50, seed=4, dtype=dtype), scale=0.5)
    dense = u.to_dense()
    for rank in (3, 8):
        fb, db = u.basis(rank), top_singular_basis(dense, rank, method="exact")
        assert fb.rank == db.rank == rank and fb.S.dtype == dtype
        torch.testing.assert_close(fb.S, db.S, rtol=tol, atol=0)
        assert basis_angles(fb, db).max() < tol
        assert basis_angles(fb, db, side="right").max() < tol
        assert fb.energy_captured == pytest.approx(db.energy_captured, rel=tol)
    # The reconstruction is the update itself.
    full = u.basis(16)
    torch.testing.assert_close((full.U * full.S) @ full.Vh, dense, rtol=0, atol=tol * dense.abs().max().item())


def test_rank_is_capped_at_the_lora_rank_like_the_dense_path():
    u = FactoredUpdate(*_factors(70, 5, 90, seed=5))
    assert u.basis(16).rank == 5
    assert top_singular_basis(u.to_dense(), 16).rank == 5  # numerical rank of the dense matrix
    assert top_singular_basis(u, energy=0.9).rank == top_singular_basis(u.to_dense(), energy=0.9).rank


def test_top_singular_basis_and_sizes_dispatch_on_factored(pair):
    u1, u2 = pair
    fb = top_singular_basis(u1, 4, method="randomized")  # the exact factored path ignores method
    torch.testing.assert_close(fb.S, u1.basis(4).S, rtol=0, atol=0)
    angles = principal_angles(u1.basis(4).U, u2.basis(4).U)
    torch.testing.assert_close(
        basis_angles(top_singular_basis(u1, 4), top_singular_basis(u2, 4)),
        basis_angles(top_singular_basis(u1.to_dense(), 4), top_singular_basis(u2.to_dense(), 4)),
        atol=1e-10,
        rtol=0,
    )
    assert angles.shape == (4,)


def test_rank_larger_than_a_side_and_negative_scale():
    u = FactoredUpdate(*_factors(3, 5, 4, seed=6), scale=-1.5)
    dense = u.to_dense()
    basis = u.basis(16)
    assert basis.rank == 3
    torch.testing.assert_close(basis.S, torch.linalg.svdvals(dense), rtol=1e-12, atol=0)
    assert u.fro() == pytest.approx(torch.linalg.matrix_norm(dense).item(), rel=1e-12)


def test_transpose_and_row_parts_match_dense(pair):
    u1, u2 = pair
    torch.testing.assert_close(u1.transpose().to_dense(), u1.to_dense().T, rtol=0, atol=1e-12)
    index = torch.tensor([0, 5, 7, 59])
    torch.testing.assert_close(u1.take_rows(index).to_dense(), u1.to_dense()[index], rtol=0, atol=1e-12)
    torch.testing.assert_close(u2.take_rows(slice(10, 30)).to_dense(), u2.to_dense()[10:30], rtol=0, atol=1e-12)


def test_zero_update_and_half_precision_factors():
    zero = FactoredUpdate(torch.zeros(10, 2), torch.randn(2, 8))
    assert zero.fro() == 0.0 and zero.basis(4).rank == 0
    b, a = _factors(20, 3, 16, seed=7, dtype=torch.float32)
    half = FactoredUpdate(b.bfloat16(), a.bfloat16(), scale=2.0)
    assert half.dtype == torch.float32
    reference = torch.linalg.svdvals(2.0 * b.bfloat16().float() @ a.bfloat16().float())[:3]
    torch.testing.assert_close(half.basis(3).S, reference, rtol=1e-5, atol=0)


def test_bad_factors_raise_value_error_with_shapes(pair):
    with pytest.raises(ValueError, match=r"\(6, 3\).*\(4, 5\)"):
        FactoredUpdate(torch.randn(6, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"\(6,\)"):
        FactoredUpdate(torch.randn(6), torch.randn(1, 5))
    u1, _ = pair
    with pytest.raises(ValueError, match=r"\(60, 40\).*\(40, 60\)"):
        u1.inner(u1.transpose())
    with pytest.raises(ValueError, match=r"\(60, 40\).*\(40, 60\)"):
        update_cosine(u1, u1.to_dense().T)
