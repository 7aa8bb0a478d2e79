"""EWC: the diagonal (empirical) Fisher of a task's training data and the quadratic penalty.

At the end of a task, for its training records x_n with answers y_n (completion + EOS),

    F_i = (1/N) Σ_n (∂/∂θ_i log p_θ(y_n | x_n))²

with log p the *sum* of the answer tokens' log-probabilities (one per-example gradient each,
so F is the empirical Fisher, not the square of a batch gradient). Later tasks add

    λ/2 · Σ_i F_i (θ_i − θ*_i)²

to their loss, θ* the weights at the end of the task (Kirkpatrick et al., 2017). Several
earlier tasks each contribute their own (F, θ*) term.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError, UsageError
from ..training.records import IGNORE_INDEX, PaddingCollator, Record, encode_records

__all__ = ["FisherDiagonal", "diagonal_fisher", "EwcPenalty"]

logger = logging.getLogger(__name__)


@dataclass
class FisherDiagonal:
    """A diagonal Fisher and the weights it anchors.

    Attributes:
        fisher: name → F (same shape as the parameter, float32), for every parameter that
            required grad when it was computed.
        anchor: name → θ* (a detached copy of the weights the Fisher was computed at).
        source: what data it was computed on (e.g. the task name).
        n_examples: training examples averaged over.
    """

    fisher: dict[str, torch.Tensor] = field(repr=False)
    anchor: dict[str, torch.Tensor] = field(repr=False)
    source: str
    n_examples: int

    def total(self) -> float:
        """Σ_i F_i (a scale to set λ against)."""
        return float(sum(f.double().sum() for f in self.fisher.values()))


def diagonal_fisher(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    source: str = "",
    max_examples: Optional[int] = None,
    seed: int = 0,
) -> FisherDiagonal:
    """Empirical diagonal Fisher of ``records`` at the model's current weights.

    Args:
        model: evaluated in eval mode (no dropout); gradients are computed for parameters with
            ``requires_grad`` and left cleared afterwards; the weights are not changed.
        tokenizer: encodes the records as in training (loss on completion + EOS).
        records: the task's training records.
        source: recorded in the result.
        max_examples: use a seeded random subset of this many records (None: all).
        seed: the subset's seed.
    """
    examples = encode_records(tokenizer, records)
    if max_examples is not None and max_examples < len(examples):
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[:max_examples]
        examples = [examples[i] for i in sorted(order.tolist())]
    if not examples:
        raise InvalidDataError("no records to compute a Fisher on")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    collate = PaddingCollator(pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for example in examples:
            batch = collate([{"input_ids": list(example.input_ids), "labels": list(example.labels)}])
            ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
            targets = labels[:, 1:]
            mask = targets != IGNORE_INDEX
            log_probs = torch.log_softmax(logits, dim=-1)
            log_likelihood = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask].sum()
            grads = torch.autograd.grad(log_likelihood, list(params.values()), allow_unused=True)
            for name, grad in zip(params, grads):
                if grad is not None:
                    fisher[name] += grad.float() ** 2
    finally:
        model.train(was_training)
    for f in fisher.values():
        f /= len(examples)
    anchor = {name: p.detach().clone() for name, p in params.items()}
    result = FisherDiagonal(fisher, anchor, source, len(examples))
    logger.info("Fisher of %s on %d examples: sum %.4g over %d tensors", source or "records", len(examples),
                result.total(), len(fisher))
    return result


class EwcPenalty:
    """``λ/2 · Σ_terms Σ_i F_i (θ_i − θ*_i)²`` as a callable of the model (for ``train_model(extra_loss=...)``).

    Only parameters that are trainable now and have a Fisher entry contribute (a frozen tensor
    cannot move, so its term is constant).

    >>> import torch
    >>> model = torch.nn.Linear(2, 1, bias=False)
    >>> _ = torch.nn.init.zeros_(model.weight)  # a random start would round (w + 1) − w
    >>> anchor = {"weight": model.weight.detach().clone()}
    >>> penalty = EwcPenalty([FisherDiagonal({"weight": torch.ones(1, 2)}, anchor, "t0", 1)], lam=2.0)
    >>> penalty(model).item()
    0.0
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(torch.tensor([[1.0, 2.0]]))
    >>> penalty(model).item()  # 2/2 · (1 + 4)
    5.0
    """

    def __init__(self, terms: Sequence[FisherDiagonal], lam: float):
        if not lam > 0 or not math.isfinite(lam):
            raise UsageError(f"lambda must be a positive number, got {lam}")
        self.terms = list(terms)
        self.lam = float(lam)

    def __call__(self, model: torch.nn.Module) -> torch.Tensor:
        params: Mapping[str, torch.nn.Parameter] = dict(model.named_parameters())
        total = torch.zeros((), device=next(model.parameters()).device)
        for term in self.terms:
            for name, f in term.fisher.items():
                p = params.get(name)
                if p is None or not p.requires_grad:
                    continue
                total = total + (f.to(p.device) * (p - term.anchor[name].to(p.device)) ** 2).sum()
        return 0.5 * self.lam * total
