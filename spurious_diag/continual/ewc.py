"""EWC: the diagonal (empirical) Fisher of a task's training data and the quadratic penalty.

At the end of a task, for its training records x_n with answers y_n (completion + EOS),

    F_i = (1/N) Σ_n (∂/∂θ_i log p_θ(y_n | x_n))²

with log p the *sum* of the answer tokens' log-probabilities (one per-example gradient each,
so F is the empirical Fisher, not the square of a batch gradient). Later tasks add

    λ/2 · Σ_i F_i (θ_i − θ*_i)²

to their loss, θ* the weights at the end of the task (Kirkpatrick et al., 2017). Several
earlier tasks each contribute their own (F, θ*) term.

The paper's code (DESIGN.md §2c) defines EWC differently, and :func:`batch_fisher` and
:func:`running_average` follow it: F_t = Σ_batches b · (∇ of the batch-mean loss)² / N over the
task's training batches (b examples each, N in all), and across tasks one running average
F = (F_t + t · F_old) / (t + 1), anchored at the latest model.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError, MismatchError, UsageError
from ..training.evaluate import eval_mode
from ..training.records import IGNORE_INDEX, PaddingCollator, Record, encode_records

__all__ = ["FisherDiagonal", "diagonal_fisher", "fisher_from_batch_gradients", "batch_fisher", "running_average",
           "save_fisher", "load_fisher", "EwcPenalty"]

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


def _examples(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record], max_examples: Optional[int],
              seed: int) -> list:
    """The encoded records, or a seeded random subset of ``max_examples`` of them (in their order)."""
    examples = encode_records(tokenizer, records)
    if max_examples is not None and max_examples < len(examples):
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed))[:max_examples]
        examples = [examples[i] for i in sorted(order.tolist())]
    if not examples:
        raise InvalidDataError("no records to compute a Fisher on")
    return examples


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
    examples = _examples(tokenizer, records, max_examples, seed)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    collate = PaddingCollator(pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device
    with eval_mode(model):
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
    for f in fisher.values():
        f /= len(examples)
    anchor = {name: p.detach().clone() for name, p in params.items()}
    result = FisherDiagonal(fisher, anchor, source, len(examples))
    logger.info("Fisher of %s on %d examples: sum %.4g over %d tensors", source or "records", len(examples),
                result.total(), len(fisher))
    return result


def fisher_from_batch_gradients(batches: Iterable[tuple[int, Mapping[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """F = Σ_batches b · g_b² / Σ b, for (b, name → g_b) with g_b the gradient of the batch-mean loss.

    ``batches`` is read once, one batch at a time (a generator keeps one batch's gradients in memory).
    Returns float32 tensors (accumulated in float64).

    >>> fisher_from_batch_gradients([(2, {"w": torch.tensor([1.0])}), (1, {"w": torch.tensor([4.0])})])["w"]
    tensor([6.])
    """
    total = 0
    out: dict[str, torch.Tensor] = {}
    for size, grads in batches:
        total += size
        for name, grad in grads.items():
            term = size * grad.detach().double() ** 2
            out[name] = out[name] + term if name in out else term
    if not total:
        raise InvalidDataError("no batches to compute a Fisher on")
    return {name: (f / total).float() for name, f in out.items()}


def batch_fisher(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    batch_size: int,
    source: str = "",
    max_examples: Optional[int] = None,
    seed: int = 0,
) -> FisherDiagonal:
    """The paper's Fisher of ``records`` at the model's current weights (:func:`fisher_from_batch_gradients`).

    The records are encoded as in training and taken in order, ``batch_size`` at a time (the last
    batch may be smaller); each batch's loss is the model's own (the mean over answer tokens).
    The model is evaluated in eval mode and its weights are not changed. ``max_examples`` takes a
    seeded random subset of the records first (None: all).
    """
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    examples = _examples(tokenizer, records, max_examples, seed)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    collate = PaddingCollator(pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device

    def batch_gradients() -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch = collate([{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in chunk])
            loss = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                         labels=batch["labels"].to(device), use_cache=False).loss
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            yield len(chunk), {name: g for name, g in zip(params, grads) if g is not None}

    with eval_mode(model):
        fisher = fisher_from_batch_gradients(batch_gradients())
    anchor = {name: p.detach().clone() for name, p in params.items()}
    return FisherDiagonal(fisher, anchor, source, len(examples))


def running_average(new: FisherDiagonal, old: Optional[FisherDiagonal], tasks_before: int) -> FisherDiagonal:
    """The paper's running Fisher after task t = ``tasks_before``: (F_t + t · F_old) / (t + 1),
    anchored at ``new``'s weights (the latest model). With no ``old`` (t = 0), ``new`` itself.

    Raises:
        UsageError: t < 0, or an ``old`` with t = 0.
        MismatchError: Fishers over different tensors or shapes.

    >>> a = FisherDiagonal({"w": torch.tensor([3.0])}, {"w": torch.tensor([1.0])}, "t1", 1)
    >>> b = FisherDiagonal({"w": torch.tensor([6.0])}, {"w": torch.tensor([0.0])}, "t0", 1)
    >>> running_average(a, b, 2).fisher["w"]  # (3 + 2·6) / 3
    tensor([5.])
    """
    if tasks_before < 0 or (old is not None and tasks_before == 0):
        raise UsageError(f"a running average after {tasks_before} earlier tasks needs t >= 1 with an old Fisher")
    if old is None:
        return new
    if set(new.fisher) != set(old.fisher):
        raise MismatchError("the Fishers cover different tensors", tensor=sorted(set(new.fisher) ^ set(old.fisher))[0])
    t = tasks_before
    fisher = {}
    for name, f in new.fisher.items():
        if f.shape != old.fisher[name].shape:
            raise MismatchError("the Fishers differ in shape", tensor=name)
        fisher[name] = ((f.double() + t * old.fisher[name].to(f.device).double()) / (t + 1)).float()
    return FisherDiagonal(fisher, new.anchor, new.source, new.n_examples)


def save_fisher(term: FisherDiagonal, path: "os.PathLike[str] | str") -> None:
    """Write ``term`` (Fisher, anchor, source, count, and the names' order) to a safetensors file."""
    tensors = {f"fisher/{n}": t.contiguous() for n, t in term.fisher.items()}
    tensors.update({f"anchor/{n}": t.contiguous() for n, t in term.anchor.items()})
    # The names' order too: sums over the terms (FisherDiagonal.total, the penalty) follow it.
    save_file(tensors, str(path), metadata={"source": term.source, "n_examples": str(term.n_examples),
                                             "fisher_order": json.dumps(list(term.fisher)),
                                             "anchor_order": json.dumps(list(term.anchor))})


def load_fisher(path: "os.PathLike[str] | str") -> FisherDiagonal:
    """Read a :class:`FisherDiagonal` written by :func:`save_fisher`."""
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    part = {kind: {n: tensors[f"{kind}/{n}"] for n in json.loads(metadata[f"{kind}_order"])}
            for kind in ("fisher", "anchor")}
    return FisherDiagonal(part["fisher"], part["anchor"], metadata["source"], int(metadata["n_examples"]))


class _WeightedSquaredDistance(torch.autograd.Function):
    """``Σ_i F_i (θ_i − θ*_i)²`` of one tensor, with gradient ``2 F (θ − θ*)`` saved from the forward.

    The same value and gradient as autograd through ``(F * (θ − θ*) ** 2).sum()``, in fewer passes
    over memory (a scratch timing, not a benchmark, on SmolLM2's 135M weights and one thread: about
    0.5 s per step instead of 1.0 for the penalty's forward and backward).
    """

    @staticmethod
    def forward(ctx: Any, param: torch.Tensor, anchor: torch.Tensor, fisher: torch.Tensor) -> torch.Tensor:
        delta = (param.detach() - anchor).to(fisher.dtype)
        weighted = fisher * delta
        ctx.save_for_backward(weighted)
        ctx.param_dtype = param.dtype
        return torch.dot(weighted.reshape(-1), delta.reshape(-1))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (weighted,) = ctx.saved_tensors
        return (weighted * (2 * grad)).to(ctx.param_dtype), None, None


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

    def __call__(self, model: torch.nn.Module, extras: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        """The penalty at ``model``'s weights (``extras``, the batch's extra entries, are not used)."""
        params: Mapping[str, torch.nn.Parameter] = dict(model.named_parameters())
        total = torch.zeros((), device=next(model.parameters()).device)
        for term in self.terms:
            for name, f in term.fisher.items():
                p = params.get(name)
                if p is None or not p.requires_grad:
                    continue
                total = total + _WeightedSquaredDistance.apply(p, term.anchor[name].to(p.device), f.to(p.device))
        return 0.5 * self.lam * total
