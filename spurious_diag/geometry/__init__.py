"""Pure math on weight updates: sizes, singular bases, principal angles, overlaps, intruders, and the
rounding-noise floor of stored weights (:mod:`.noise`).

Every function takes torch tensors (any float dtype, any device; half
precision is upcast to float32 per tensor) and returns Python floats or
tensors on the input's device. Nothing here imports the rest of the package,
holds global state (beyond a memo of seeded random test matrices), or draws
unseeded random numbers. Angles are in radians.
"""

from .angles import (
    BasisComparison,
    basis_angles,
    compare_bases,
    one_sided_angles,
    principal_angles,
    random_overlap,
    subspace_overlap,
)
from .bases import randomized_svd, top_singular_basis
from .factored import FactoredUpdate
from .intruders import IntruderResult, intruder_dimensions
from .noise import factored_noise, noise_edge, rounding_noise_sq, rounding_variance, ulp
from .sizes import UpdateSizes, accumulated_products, random_cosine_scale, update_cosine, update_sizes
from .spectrum import SingularBasis, energy_rank

__all__ = [
    "UpdateSizes",
    "accumulated_products",
    "ulp",
    "rounding_variance",
    "rounding_noise_sq",
    "noise_edge",
    "factored_noise",
    "update_sizes",
    "update_cosine",
    "random_cosine_scale",
    "SingularBasis",
    "energy_rank",
    "top_singular_basis",
    "randomized_svd",
    "FactoredUpdate",
    "principal_angles",
    "BasisComparison",
    "compare_bases",
    "basis_angles",
    "subspace_overlap",
    "random_overlap",
    "one_sided_angles",
    "IntruderResult",
    "intruder_dimensions",
]
