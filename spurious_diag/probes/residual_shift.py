"""Residual-stream shift per layer between two checkpoints on the same inputs.

Both models read the same prompts; at the last prompt token of each (:mod:`.hidden`; layer 0 =
embeddings, layer l = output of block l − 1, layer L after the final norm in most HF models)
their hidden states H_a, H_b (N×D) are compared per layer with :mod:`.similarity`:

- ``mean_shift_rel``: ‖mean(H_b) − mean(H_a)‖ / ‖mean(H_a)‖ (dimensionless);
- ``cka``: linear CKA (1 = same representation up to rotation and scale);
- ``cka_debiased``: CKA from the unbiased HSIC estimator (less biased for N not ≫ D);
- ``pc1_angle_deg``: angle between the sign-aligned first principal directions, degrees in
  [0, 90] (exact eigendecomposition: deterministic, no seed needed).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import MismatchError
from .hidden import last_prompt_hidden_states
from .records import as_probe_records
from .similarity import debiased_linear_cka, first_pc_angle_deg, linear_cka, mean_shift_rel

__all__ = ["SHIFT_COLUMNS", "compare_hidden_states", "residual_shift"]

logger = logging.getLogger(__name__)

SHIFT_COLUMNS = ["layer", "n", "mean_shift_rel", "cka", "cka_debiased", "pc1_angle_deg"]


def compare_hidden_states(hidden_a: torch.Tensor, hidden_b: torch.Tensor) -> pd.DataFrame:
    """Per-layer comparison of two (L + 1)×N×D stacks of hidden states of the same N inputs.

    Returns:
        One row per layer with :data:`SHIFT_COLUMNS` (``cka_debiased`` NaN when N < 4).
    """
    if hidden_a.shape != hidden_b.shape or hidden_a.ndim != 3:
        raise MismatchError(f"hidden states differ in shape: {tuple(hidden_a.shape)} vs {tuple(hidden_b.shape)}")
    rows = []
    n = hidden_a.shape[1]
    for layer in range(hidden_a.shape[0]):
        a, b = hidden_a[layer], hidden_b[layer]
        rows.append({
            "layer": layer, "n": n, "mean_shift_rel": mean_shift_rel(a, b), "cka": linear_cka(a, b),
            "cka_debiased": debiased_linear_cka(a, b) if n >= 4 else float("nan"),
            "pc1_angle_deg": first_pc_angle_deg(a, b),
        })
    return pd.DataFrame(rows, columns=SHIFT_COLUMNS)


def residual_shift(
    model_a: PreTrainedModel,
    model_b: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Any],
    *,
    batch_size: int = 256,
) -> pd.DataFrame:
    """How far checkpoint b's residual stream moved from checkpoint a's, per layer.

    Args:
        model_a, model_b: two checkpoints of one architecture (same tokenizer, same hidden size).
        records: prompt/completion records; only the prompts are read.
        batch_size: prompts per forward pass.

    Returns:
        :func:`compare_hidden_states` of the two models' last-prompt-token states.
    """
    prompts = [r.prompt for r in as_probe_records(records)]
    hidden_a = last_prompt_hidden_states(model_a, tokenizer, prompts, batch_size=batch_size)
    hidden_b = last_prompt_hidden_states(model_b, tokenizer, prompts, batch_size=batch_size)
    frame = compare_hidden_states(hidden_a, hidden_b)
    logger.info("residual shift over %d prompts, %d layers", len(prompts), len(frame))
    return frame
