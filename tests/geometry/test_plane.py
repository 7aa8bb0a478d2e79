"""The plane through three states: planted coordinates come back, off-plane parts are measured, bad inputs named."""

from __future__ import annotations

import math

import pytest
import torch

from spurious_diag.geometry.plane import (
    PlaneInputError,
    plane_through,
    point_on,
    project,
)

SHAPES = {"embed.weight": (7, 5), "block.0.w": (5, 5), "block.0.b": (5,), "head.weight": (3, 5)}


def _state(seed: int, scale: float = 1.0, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for n, s in SHAPES.items()}


def _trio(dtype: torch.dtype = torch.float64):
    a = _state(0, dtype=dtype)
    b = {n: a[n] + _state(1, 0.1, dtype)[n] for n in a}
    end = {n: b[n] + _state(2, 0.1, dtype)[n] for n in a}
    return a, b, end


def _combine(a, d1, d2, x, y):
    return {n: a[n] + x * d1[n] + y * d2[n] for n in a}


@pytest.mark.parametrize("xy", [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.3, -2.5), (-1.0, 12.0), (7.0, 0.125)])
def test_projection_recovers_planted_coordinates(xy):
    a, b, end = _trio()
    plane = plane_through(a, b, end)
    d1 = {n: b[n] - a[n] for n in a}
    d2 = {n: end[n] - b[n] for n in a}
    point = project(plane, _combine(a, d1, d2, *xy))
    assert point.x == pytest.approx(xy[0], abs=1e-9)
    assert point.y == pytest.approx(xy[1], abs=1e-9)
    assert point.residual < 1e-9


def test_anchors_project_to_their_corners():
    a, b, end = _trio(torch.float32)
    plane = plane_through(a, b, end)
    for state, expected in ((a, (0.0, 0.0)), (b, (1.0, 0.0)), (end, (1.0, 1.0))):
        p = project(plane, state)
        assert (p.x, p.y) == (pytest.approx(expected[0], abs=1e-9), pytest.approx(expected[1], abs=1e-9))
        assert p.residual < 1e-9
    assert project(plane, a).residual == 0.0


def test_gram_matrix_and_directions_in_float64():
    a, b, end = _trio(torch.float32)
    plane = plane_through(a, b, end)
    d1 = torch.cat([(b[n].double() - a[n].double()).ravel() for n in SHAPES])
    d2 = torch.cat([(end[n].double() - b[n].double()).ravel() for n in SHAPES])
    expected = torch.tensor([[d1 @ d1, d1 @ d2], [d1 @ d2, d2 @ d2]], dtype=torch.float64)
    assert plane.gram.dtype == torch.float64
    torch.testing.assert_close(plane.gram, expected, rtol=1e-12, atol=0)
    assert plane.names == tuple(SHAPES)
    assert all(plane.origin[n].dtype == plane.d1[n].dtype == plane.d2[n].dtype == torch.float64 for n in SHAPES)


def test_residual_of_an_off_plane_point_against_a_hand_built_orthogonal_component():
    a, b, end = _trio()
    plane = plane_through(a, b, end)
    flat = lambda s: torch.cat([s[n].ravel() for n in SHAPES])
    d1, d2 = flat(plane.d1), flat(plane.d2)
    # a direction orthogonal to d1 and d2: Gram–Schmidt of a random vector against an orthonormal basis of the plane
    q, _ = torch.linalg.qr(torch.stack([d1, d2], dim=1))
    w = torch.randn(d1.numel(), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    w = w - q @ (q.T @ w)
    w = 0.7 * w / w.norm()
    x, y = 0.4, -1.3
    in_plane = x * d1 + y * d2
    theta_flat = flat(a) + in_plane + w
    theta, offset = {}, 0
    for n, shape in SHAPES.items():
        size = math.prod(shape)
        theta[n] = theta_flat[offset:offset + size].reshape(shape)
        offset += size
    point = project(plane, theta)
    assert point.x == pytest.approx(x, abs=1e-9)
    assert point.y == pytest.approx(y, abs=1e-9)
    expected = float(w.norm() / (in_plane + w).norm())
    assert point.residual == pytest.approx(expected, rel=1e-9)
    assert 0.0 < point.residual < 1.0


def test_a_purely_orthogonal_point_has_residual_one():
    a = {"w": torch.zeros(3, dtype=torch.float64)}
    plane = plane_through(a, {"w": torch.tensor([2.0, 0, 0])}, {"w": torch.tensor([2.0, 3.0, 0])})
    p = project(plane, {"w": torch.tensor([0.0, 0.0, -4.0])})
    assert (p.x, p.y, p.residual) == (0.0, 0.0, 1.0)


def test_coordinates_are_in_units_of_the_directions_not_orthonormalized():
    # d1 = (2, 0), d2 = (1, 1): not orthogonal, not unit; θ = a + 0.5 d1 + 2 d2 = (3, 2)
    plane = plane_through({"w": torch.zeros(2)}, {"w": torch.tensor([2.0, 0.0])}, {"w": torch.tensor([3.0, 1.0])})
    p = project(plane, {"w": torch.tensor([3.0, 2.0])})
    assert (p.x, p.y) == (pytest.approx(0.5, abs=1e-12), pytest.approx(2.0, abs=1e-12))
    assert plane.cos_angle == pytest.approx(1 / math.sqrt(2))


def test_point_on_inverts_project_and_keeps_dtype():
    a, b, end = _trio(torch.float32)
    plane = plane_through(a, b, end)
    state = point_on(plane, 0.5, 0.25)
    assert set(state) == set(SHAPES) and all(t.dtype == torch.float32 for t in state.values())
    p = project(plane, state)
    assert (p.x, p.y) == (pytest.approx(0.5, abs=1e-6), pytest.approx(0.25, abs=1e-6))
    exact = point_on(plane, 0.5, 0.25, dtype=torch.float64)
    p64 = project(plane, exact)
    assert (p64.x, p64.y) == (pytest.approx(0.5, abs=1e-12), pytest.approx(0.25, abs=1e-12))
    assert torch.equal(point_on(plane, 0, 0)["block.0.w"], a["block.0.w"])
    assert torch.equal(point_on(plane, 1, 0)["block.0.w"], b["block.0.w"])
    assert torch.equal(point_on(plane, 1, 1)["block.0.w"], end["block.0.w"])


def test_collinear_directions_are_refused():
    a, b, _ = _trio()
    beyond = {n: b[n] + 2.0 * (b[n] - a[n]) for n in a}  # d2 = 2 d1
    with pytest.raises(PlaneInputError, match="collinear") as info:
        plane_through(a, b, beyond)
    assert info.value.kind == "degenerate"
    back = {n: a[n].clone() for n in a}  # d2 = −d1
    with pytest.raises(PlaneInputError, match="collinear"):
        plane_through(a, b, back)


@pytest.mark.parametrize("which", ["d1", "d2"])
def test_zero_directions_are_refused(which):
    a, b, end = _trio()
    args = (a, a, end) if which == "d1" else (a, b, b)
    with pytest.raises(PlaneInputError, match=f"{which} = .* is zero"):
        plane_through(*args)


def test_mismatches_name_the_tensor():
    a, b, end = _trio()
    wrong_shape = dict(b, **{"block.0.w": torch.zeros(5, 4, dtype=torch.float64)})
    with pytest.raises(PlaneInputError, match="block.0.w.*shapes differ") as info:
        plane_through(a, wrong_shape, end)
    assert info.value.tensor == "block.0.w" and info.value.kind == "mismatch"
    missing = {n: t for n, t in end.items() if n != "head.weight"}
    with pytest.raises(PlaneInputError, match="head.weight.*missing from θ_end"):
        plane_through(a, b, missing)
    extra = dict(b, **{"extra.weight": torch.zeros(2, dtype=torch.float64)})
    with pytest.raises(PlaneInputError, match="extra.weight"):
        plane_through(a, extra, end)
    integer = dict(end, **{"block.0.b": torch.zeros(5, dtype=torch.int64)})
    with pytest.raises(PlaneInputError, match="block.0.b.*floating"):
        plane_through(a, b, integer)
    plane = plane_through(a, b, end)
    with pytest.raises(PlaneInputError, match="embed.weight.*shape"):
        project(plane, dict(a, **{"embed.weight": torch.zeros(5, 7)}))


def test_integer_buffers_are_left_out_and_names_select_tensors():
    a, b, end = _trio()
    for s in (a, b, end):
        s["position_ids"] = torch.arange(4)
    plane = plane_through(a, b, end)
    assert "position_ids" not in plane.names
    sub = plane_through(a, b, end, names=["block.0.w", "head.weight"])
    assert sub.names == ("block.0.w", "head.weight")
    assert set(point_on(sub, 1, 1)) == {"block.0.w", "head.weight"}
    with pytest.raises(PlaneInputError, match="position_ids.*floating"):
        plane_through(a, b, end, names=["position_ids"])
