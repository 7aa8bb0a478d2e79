"""The paper's weight-view quantity, as its official code computes it (DESIGN.md §2c), for side-by-side comparison.

Per weight and update ΔW (m×n, output axis first):

1. orient it so that its left singular vectors live in the hidden space: the embeddings and the
   MLP input projections (``gate``/``up``, whose outputs are the MLP's inner width) are
   transposed (:data:`HIDDEN_INPUT_MODULES`);
2. z-score it over all its elements: (ΔW − mean) / std;
3. keep the left singular vectors up to 99% of its energy (exact SVD);
4. for each kept vector u_i of the later update, θ_i = arccos ‖P_A u_i‖, with P_A the projection
   on the earlier update's kept vectors: :func:`paper_one_sided_angles`.

This differs from the audit's own principal angles (top-r, no z-scoring, output axis first,
noise floor): the paper's mean of θ_i over a high-rank (99% energy) basis is dominated by its
many weak directions.
"""

from __future__ import annotations

import torch

from ._tensors import require_matrix, to_working
from .angles import one_sided_angles
from .spectrum import energy_rank

__all__ = ["HIDDEN_INPUT_MODULES", "PAPER_ENERGY", "paper_orientation", "paper_basis", "paper_one_sided_angles"]

# Normalized modules whose (out, in) update is transposed so that its left vectors live in the hidden space.
HIDDEN_INPUT_MODULES = frozenset({"embed_tokens", "mlp.gate_proj", "mlp.up_proj"})
PAPER_ENERGY = 0.99


def paper_orientation(delta: torch.Tensor, module: str) -> torch.Tensor:
    """``delta`` (m×n, output axis first) transposed when ``module`` is an embedding or an MLP input projection.

    >>> paper_orientation(torch.zeros(6, 2), "mlp.up_proj").shape, paper_orientation(torch.zeros(6, 2), "attn.o_proj").shape
    (torch.Size([2, 6]), torch.Size([6, 2]))
    """
    require_matrix("delta", delta)
    return delta.mT if module in HIDDEN_INPUT_MODULES else delta


def paper_basis(delta: torch.Tensor, energy: float = PAPER_ENERGY) -> torch.Tensor:
    """The left singular vectors of the z-scored ``delta`` (m×n) up to ``energy`` of its energy (m×k, exact SVD).

    A constant update (zero standard deviation) has no basis: m×0.
    """
    require_matrix("delta", delta)
    (x,) = to_working(delta)
    std = x.std()
    if not float(std) > 0:
        return x.new_zeros(x.shape[0], 0)
    z = (x - x.mean()) / std
    u, s, _ = torch.linalg.svd(z, full_matrices=False)
    return u[:, : energy_rank(s, energy=energy)]


def paper_one_sided_angles(delta_a: torch.Tensor, delta_b: torch.Tensor, module: str,
                           energy: float = PAPER_ENERGY) -> torch.Tensor:
    """θ_i = arccos ‖P_A u_i‖ (radians) for each kept vector u_i of update b, P_A the projection on update a's.

    Both updates are m×n, output axis first; ``module`` decides the orientation (:func:`paper_orientation`).
    """
    basis_a = paper_basis(paper_orientation(delta_a, module), energy)
    basis_b = paper_basis(paper_orientation(delta_b, module), energy)
    return one_sided_angles(basis_a, basis_b)
