"""The noise floor of each update of a tensor, and what falls below it.

A stored update carries the rounding of its checkpoints (:mod:`.noise`, DESIGN.md §2b). Per
(update, fused part) this gives ``noise_fro``, the expected norm of that noise, and the edge of
its singular values. Directions of the update below the edge are dropped from its basis; an
update whose ``snr`` = ‖ΔW‖_F / noise_fro is below :data:`MIN_SNR`, or that has no direction above
the edge, is *below the noise floor*: its angles would be those of rounding, and are not reported.

:data:`MIN_SNR` = 2 was set by planted pairs of rank-8 updates (singular values 1 … 0.5, principal
angles 10° … 80° between the two), 576×576 and 1536×576, stored in bfloat16 (relative sizes 3e-2 …
1e-4) and float16 (3e-3 … 1e-4), seeds 1–3, audited at rank 16 (``python
benchmarks/bench_noise_floor.py --planted`` prints the table), on two kinds of weights:

- SmolLM2-135M's layer-3 ``q_proj`` and ``up_proj``: rank 8 and the pair's mean and smallest angle
  within 2° of the planted ones at every snr ≥ 1.03 (within 0.22° and 0.54° at snr ≈ 2);
- synthetic weights whose rows and columns vary in scale (log-normal, σ = 0.5): the same at every
  snr ≥ 1.35, but rank 5–7 at snr ≈ 1.0, where the edge, a bound, cuts the weakest planted
  directions, and the mean angle then off by 4.7–15°;
- at snr ≈ 0.5 on either, directions are lost or angles off by up to 18°; without the noise floor
  every one of these audits had rank 16 and a mean angle 10–29° off, at every size, because the
  eight extra directions were rounding noise.

On real updates (SmolLM2-135M fine-tuned 20 steps at lr 1e-5 and 1e-4, ``bench_noise_floor.py``),
the audit's snr was 0.78–1.38× the snr measured against a float32 copy of the same chain (median
1.25 and 1.11), and the bf16 angles the floor still reported were within 0.6° of the float32 ones.

float32 storage put snr above 8000 at every size. The model counts the rounding of both
checkpoints and assumes each stored value moved by at least an ulp, so it overestimates the noise
of tiny updates (by 1.4× where the base was exact, 2–9× below snr 1.5): the floor errs on the side
of saying "cannot tell". ``tests/updates/test_noise_floor.py`` checks the rule on the synthetic weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..geometry.noise import factored_noise, noise_edge
from ..io.adapter import LoraAdapter
from .gram import GramResult
from .options import MIN_SNR
from .plan import AuditPlan
from .tensor import TensorContext

__all__ = ["MIN_SNR", "UpdateNoise", "update_noise", "below_floor"]


@dataclass(frozen=True)
class UpdateNoise:
    """The rounding noise of one update of one tensor part (units of the weights).

    Attributes:
        fro: its expected Frobenius norm (``noise_fro``).
        edge: where its singular values end: directions of the update below it are noise.
    """

    fro: float
    edge: float

    def snr(self, fro: float) -> float:
        """‖ΔW‖_F / noise_fro (inf without noise, NaN for a zero update without noise)."""
        if self.fro > 0:
            return fro / self.fro
        return math.inf if fro > 0 else math.nan


def update_noise(ctx: TensorContext, plan: AuditPlan, measured: GramResult) -> dict[tuple[int, int], UpdateNoise]:
    """The noise of every (update position, part) of tensor ``ctx``: for a dense update, the rounding
    of its two checkpoints (variances add; the edge adds their largest row and column sums); for a
    LoRA update, the rounding of its factors (:func:`~spurious_diag.geometry.noise.factored_noise`)."""
    out: dict[tuple[int, int], UpdateNoise] = {}
    for u, update in enumerate(plan.updates):
        if update.factored:
            adapter = plan.sources[update.target]
            assert isinstance(adapter, LoraAdapter)
            factors = adapter.factor_tensors(ctx.name) if ctx.name in adapter.factors else None
            for k, part in enumerate(ctx.parts):
                if factors is None:  # the adapter leaves this tensor alone: a zero update, no noise
                    out[(u, k)] = UpdateNoise(0.0, 0.0)
                    continue
                B, A, scale = factors
                out[(u, k)] = UpdateNoise(*factored_noise(B[part.index], A, scale, B.dtype, A.dtype))
            continue
        src, tgt = measured.noise[update.source], measured.noise[update.target]
        for k in range(len(ctx.parts)):
            total = float(src.total[k] + tgt.total[k])
            edge = noise_edge(float(src.row_max[k] + tgt.row_max[k]), float(src.col_max[k] + tgt.col_max[k]))
            out[(u, k)] = UpdateNoise(math.sqrt(max(total, 0.0)), edge)
    return out


def below_floor(fro: float, noise: UpdateNoise, min_snr: float = MIN_SNR) -> str:
    """The status of an update whose snr is below ``min_snr`` (with its numbers), else ``""``.

    An update of exactly zero is not below the floor: nothing changed, to the last bit.
    """
    snr = noise.snr(fro)
    if not fro > 0 or math.isnan(snr) or snr >= min_snr:
        return ""
    return f"below noise floor: snr {snr:.3g} < {min_snr:g} (‖ΔW‖ {fro:.3g}, rounding noise {noise.fro:.3g})"
