"""The paper's weight-view quantity: z-scoring, 99% energy, hidden-space orientation, one-sided angles."""

import math

import numpy as np
import pytest
import torch

from spurious_diag import AuditOptions, audit
from spurious_diag.geometry.paper import paper_basis, paper_one_sided_angles, paper_orientation


def _zero_mean_orthonormal(m: int, k: int, g: torch.Generator) -> torch.Tensor:
    """m×k orthonormal columns, each orthogonal to the all-ones vector (so the update's mean is exactly 0)."""
    x = torch.randn(m, k, generator=g, dtype=torch.float64)
    x -= x.mean(dim=0, keepdim=True)
    return torch.linalg.qr(x).Q


def _planted(m: int, n: int, angles_deg, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rank-3 updates (σ = 3, 2, 1) of zero mean whose left subspaces meet at ``angles_deg``."""
    g = torch.Generator().manual_seed(seed)
    q = _zero_mean_orthonormal(m, 6, g)
    v = torch.linalg.qr(torch.randn(n, 6, generator=g, dtype=torch.float64)).Q
    theta = torch.tensor(np.radians(angles_deg), dtype=torch.float64)
    u_a, u_b = q[:, :3], q[:, :3] * torch.cos(theta) + q[:, 3:] * torch.sin(theta)
    s = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    return (u_a * s) @ v[:, :3].T, (u_b * s) @ v[:, 3:].T


def test_basis_is_the_99_percent_energy_basis_of_the_z_scored_update():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 30, generator=g, dtype=torch.float64) + 0.5
    basis = paper_basis(x)
    z = (x - x.mean()) / x.std()
    _, s, _ = np.linalg.svd(z.numpy())  # an independent SVD
    k = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.99) + 1)
    assert basis.shape == (40, k)
    assert torch.allclose(basis.T @ basis, torch.eye(k, dtype=torch.float64), atol=1e-10)


def test_one_sided_angles_recover_planted_angles():
    d_a, d_b = _planted(64, 48, [20.0, 45.0, 70.0])
    theta = torch.rad2deg(paper_one_sided_angles(d_a, d_b, "attn.o_proj"))
    assert torch.allclose(theta, torch.tensor([20.0, 45.0, 70.0], dtype=torch.float64), atol=1e-8)


def test_mlp_input_projections_are_compared_in_the_hidden_space():
    """Two up-projection updates (out = inner 64, in = hidden 48) orthogonal on the output side but sharing their
    input (hidden) side: the paper's angle, taken in the hidden space, is 0; on the output side it would be 90°."""
    g = torch.Generator().manual_seed(2)
    q = _zero_mean_orthonormal(64, 6, g)
    v = torch.linalg.qr(torch.randn(48, 3, generator=g, dtype=torch.float64)).Q
    s = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    d_a, d_b = (q[:, :3] * s) @ v.T, (q[:, 3:] * s) @ v.T
    assert paper_orientation(d_a, "mlp.up_proj").shape == (48, 64)
    assert float(torch.rad2deg(paper_one_sided_angles(d_a, d_b, "mlp.up_proj")).max()) < 1e-5
    assert torch.allclose(torch.rad2deg(paper_one_sided_angles(d_a, d_b, "attn.o_proj")),
                          torch.full((3,), 90.0, dtype=torch.float64), atol=1e-8)


def test_audit_reports_the_paper_angle_beside_its_own():
    d_a, d_b = _planted(64, 64, [20.0, 45.0, 70.0])
    name = "model.layers.0.self_attn.o_proj.weight"
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 64, generator=g, dtype=torch.float64)
    result = audit([{name: w}, {name: w + d_a}, {name: w + d_b}], AuditOptions(rank=3, base=True, paper_angles=True),
                   progress=False)
    row = result.pairs.iloc[0]
    assert row["paper_rank_a"] == 3 and row["paper_rank_b"] == 3
    assert row["paper_angle_mean_deg"] == pytest.approx(45.0, abs=1e-4)  # float32 working precision
    assert row["angle_mean_deg"] == pytest.approx(45.0, abs=1e-4)  # here both quantities agree
    plain = audit([{name: w}, {name: w + d_a}], progress=False)
    assert not any(c.startswith("paper_") for c in plain.pairs.columns)
    assert math.isfinite(row["one_sided_mean_deg"])
