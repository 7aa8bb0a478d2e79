"""Format probe: the same facts asked in the task format (e.g. QA) and the pretraining format
(e.g. biography sentence completion).

Knowledge intact + alignment lost shows as the pretraining format intact and the task format
broken (DESIGN.md §3). Per model, format and attribute:

- ``exact_match``: greedy decoding reproduces the completion (teacher-forced, one pass; the task
  format must also stop with ``<eos>``, the pretraining format not, since the sentence goes on);
- ``first_token_acc``: the completion's first token is the argmax;
- ``top1`` / ``mean_rank`` / ``mrr``: the rank of the true value within the attribute's candidate
  pool, i.e. the distinct completions of that attribute among the records given (per format).
  Each candidate c is scored by its teacher-forced log-probability Σ_t log p(c_t | prompt,
  c_<t) (nats, no ``<eos>``); rank = 1 + #candidates scoring strictly higher than the truth.
  ``chance_top1`` = mean of 1/|pool|, the top-1 rate of a random ranking.
"""

from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError
from ..training.evaluate import EVAL_BATCH_SIZE, score_records
from .hidden import model_device
from .records import ProbeRecord, as_probe_records, attribute_pools, has_person_ids

__all__ = ["FORMATS", "FormatProbeResult", "candidate_ranks", "format_probe", "pair_facts"]

logger = logging.getLogger(__name__)

FORMATS = ("task", "pretraining")

ModelsArg = Union[PreTrainedModel, Mapping[str, PreTrainedModel]]


@dataclass(frozen=True)
class FormatProbeResult:
    """Scores of one or more models on both formats.

    Attributes:
        per_attribute: one row per (model, format, attribute): ``n``, ``exact_match``,
            ``first_token_acc``, ``first_token_prob``, and with ranking ``top1``, ``mean_rank``,
            ``mrr``, ``n_candidates`` (mean pool size), ``chance_top1``.
        overall: one row per (model, format): the means over attributes of those columns.
        per_record: one row per (model, format, record).
    """

    per_attribute: pd.DataFrame
    overall: pd.DataFrame
    per_record: pd.DataFrame = field(repr=False)

    def accuracy(self, model: str, fmt: str, metric: str = "exact_match") -> float:
        """One number of :attr:`overall`."""
        row = self.overall[(self.overall["model"] == model) & (self.overall["format"] == fmt)]
        if row.empty:
            raise KeyError(f"no {fmt!r} row for model {model!r}")
        return float(row[metric].iloc[0])


def _as_models(models: ModelsArg) -> dict[str, PreTrainedModel]:
    if isinstance(models, Mapping):
        return dict(models)
    return {"model": models}


def pair_facts(task: Sequence[ProbeRecord], pretraining: Sequence[ProbeRecord]
               ) -> tuple[list[ProbeRecord], list[ProbeRecord]]:
    """Keep only the facts (``person_id``, ``attribute``) present in both formats; unchanged when
    either side lacks person ids."""
    if not (has_person_ids(task) and has_person_ids(pretraining)):
        return list(task), list(pretraining)
    both = {(r.person_id, r.attribute) for r in task} & {(r.person_id, r.attribute) for r in pretraining}
    return ([r for r in task if (r.person_id, r.attribute) in both],
            [r for r in pretraining if (r.person_id, r.attribute) in both])


def _candidate_logprobs_full(model: PreTrainedModel, prompt: list[int], candidates: Sequence[list[int]],
                             pad: int) -> torch.Tensor:
    """Σ log p(candidate | prompt) for each candidate, one padded batch of full sequences (C)."""
    device = model_device(model)
    length = len(prompt) + max(len(c) for c in candidates)
    ids = torch.full((len(candidates), length), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, c in enumerate(candidates):
        ids[row, : len(prompt) + len(c)] = torch.tensor(prompt + c)
        mask[row, : len(prompt) + len(c)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
    logp = torch.log_softmax(logits[:, len(prompt) - 1 : -1].double(), dim=-1)  # C×Lc×V, predicts the candidate
    return _sum_candidate(logp, candidates)


def _sum_candidate(logp: torch.Tensor, candidates: Sequence[list[int]]) -> torch.Tensor:
    """logp: C×Lc×V log-probabilities where position t predicts candidate token t → C sums."""
    out = torch.zeros(len(candidates), dtype=torch.float64)
    for row, c in enumerate(candidates):
        out[row] = logp[row, torch.arange(len(c)), torch.tensor(c, device=logp.device)].sum().cpu()
    return out


def _cache_kwarg(model: PreTrainedModel) -> str:
    """``cache`` in transformers ≥ 5.2x, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, rows_per_chunk: int = 16) -> torch.Tensor:
    """log p(target) in float64 without a float64 copy of all the logits.

    Args:
        logits: R×T×V scores.
        targets: R×T token ids (any id where the position is padding; its value is ignored later).

    Returns:
        R×T float64 log-probabilities (nats), on the CPU.
    """
    out = torch.empty(targets.shape, dtype=torch.float64)
    for start in range(0, logits.shape[0], rows_per_chunk):
        chunk = logits[start : start + rows_per_chunk].double()
        picked = chunk.gather(-1, targets[start : start + rows_per_chunk, :, None].to(chunk.device))[..., 0]
        out[start : start + rows_per_chunk] = (picked - torch.logsumexp(chunk, dim=-1)).cpu()
    return out


def _candidate_logprobs_batched(model: PreTrainedModel, prompts: Sequence[list[int]],
                                candidates: Sequence[Sequence[list[int]]], pad: int
                                ) -> Optional[list[torch.Tensor]]:
    """Σ log p(candidate | prompt) for B records whose prompts have the same length (no padding).

    The B prompts run once as one batch; their KV caches are repeated for the candidates, which
    run as one right-padded batch of B×C continuations (C = the most candidates of a record; a
    record with fewer fills its rows with copies of its first candidate, scored and dropped).

    Args:
        prompts: B token lists, all of one length Lp.
        candidates: per record, its candidates' token lists (each non-empty).

    Returns:
        Per record, a float64 tensor of its candidates' sums (nats); None when the model returns
        no cache that can be repeated.
    """
    device = model_device(model)
    n_records, width = len(prompts), max(len(c) for c in candidates)
    first = model(input_ids=torch.tensor(prompts, device=device), use_cache=True)
    first_logp = torch.log_softmax(first.logits[:, -1].double(), dim=-1).cpu()  # B×V
    rows = [list(c[j] if j < len(c) else c[0]) for c in candidates for j in range(width)]  # B·C, record-major
    firsts = torch.tensor([r[0] for r in rows])
    sums = first_logp.repeat_interleave(width, dim=0).gather(1, firsts[:, None])[:, 0]  # B·C
    longest = max(len(r) for r in rows)
    if longest > 1:
        cache = getattr(first, "cache", None)
        if cache is None:
            cache = getattr(first, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None
        cache.batch_repeat_interleave(width)
        n_prompt = len(prompts[0])
        feed = torch.full((len(rows), longest - 1), pad, dtype=torch.long)  # tokens 0..L−2 predict 1..L−1
        targets = torch.zeros((len(rows), longest - 1), dtype=torch.long)
        mask = torch.zeros((len(rows), n_prompt + longest - 1), dtype=torch.long)
        mask[:, :n_prompt] = 1
        for i, r in enumerate(rows):
            feed[i, : len(r) - 1] = torch.tensor(r[:-1])
            targets[i, : len(r) - 1] = torch.tensor(r[1:])
            mask[i, n_prompt : n_prompt + len(r) - 1] = 1
        logits = model(input_ids=feed.to(device), attention_mask=mask.to(device), use_cache=True,
                       **{_cache_kwarg(model): cache}).logits  # B·C × (L−1) × V
        logp = _token_logprobs(logits, targets)
        keep = mask[:, n_prompt:].to(torch.bool)
        sums = sums + torch.where(keep, logp, torch.zeros_like(logp)).sum(dim=1)
    return [sums[b * width : b * width + len(candidates[b])] for b in range(n_records)]


def _same_length_batches(prompts: Sequence[list[int]], batch_size: int) -> list[list[int]]:
    """Record indices grouped by prompt length, in chunks of at most ``batch_size``."""
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    return [group[s : s + batch_size] for group in by_length.values() for s in range(0, len(group), batch_size)]


@torch.no_grad()
def candidate_ranks(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Any],
    *,
    max_candidates: Optional[int] = None,
    seed: int = 0,
    share_prompt: bool = True,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Rank of each record's completion among its attribute's candidate pool.

    Args:
        records: prompt/completion records; the pool of an attribute is the set of distinct
            completions of that attribute among them.
        max_candidates: rank among the truth + at most ``max_candidates − 1`` distractors drawn
            from the pool (``random.Random(seed)``, per record); None ranks against the whole pool.
        share_prompt: run the prompts once, ``batch_size`` records of one prompt length per
            forward, and reuse their KV caches for the candidates (several times faster); False
            scores every (prompt, candidate) sequence from scratch, one record at a time (the
            reference; the two agree to rounding).
        batch_size: records per forward with ``share_prompt`` (each brings its C candidates).

    Returns:
        One row per record, input order: ``person_id``, ``attribute``, ``rank`` (1 = best),
        ``n_candidates``, ``logprob`` (the truth's, nats).
    """
    recs = as_probe_records(records)
    pools = attribute_pools(recs)
    rng = random.Random(seed)
    encoded: dict[str, list[int]] = {}
    for values in pools.values():
        for v in values:
            if v not in encoded:
                encoded[v] = list(tokenizer(v, add_special_tokens=False).input_ids)
                if not encoded[v]:
                    raise InvalidDataError(f"completion {v!r} encodes to no tokens")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    candidates, prompts = [], []
    for r in recs:  # draws in record order, whatever the batching
        others = [v for v in pools[r.attribute] if v != r.completion]
        if max_candidates is not None and len(others) > max_candidates - 1:
            others = rng.sample(others, max(0, max_candidates - 1))
        candidates.append([encoded[v] for v in [r.completion] + others])  # the truth first
        prompts.append(list(tokenizer(r.prompt).input_ids))
    scores: list[Optional[torch.Tensor]] = [None] * len(recs)
    was_training = model.training
    model.eval()
    try:
        if share_prompt:
            for batch in _same_length_batches(prompts, batch_size):
                got = _candidate_logprobs_batched(model, [prompts[i] for i in batch],
                                                  [candidates[i] for i in batch], pad)
                if got is None:  # no reusable cache: every record from scratch
                    break
                for i, s in zip(batch, got):
                    scores[i] = s
        for i, s in enumerate(scores):
            if s is None:
                scores[i] = _candidate_logprobs_full(model, prompts[i], candidates[i], pad)
    finally:
        model.train(was_training)
    rows = [{"person_id": r.person_id, "attribute": r.attribute, "rank": int((s[1:] > s[0]).sum()) + 1,
             "n_candidates": len(c), "logprob": float(s[0])} for r, s, c in zip(recs, scores, candidates)]
    return pd.DataFrame(rows, columns=["person_id", "attribute", "rank", "n_candidates", "logprob"])


def _score_format(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, records: Sequence[ProbeRecord],
                  fmt: str, rank: bool, max_candidates: Optional[int], seed: int, batch_size: int) -> pd.DataFrame:
    scored = score_records(model, tokenizer, [r.as_json() for r in records], append_eos=(fmt == "task"),
                           batch_size=batch_size)
    if rank:
        ranks = candidate_ranks(model, tokenizer, records, max_candidates=max_candidates, seed=seed)
        scored = pd.concat([scored, ranks[["rank", "n_candidates", "logprob"]]], axis=1)
    scored.insert(0, "format", fmt)
    return scored


def _summarize(per_record: pd.DataFrame, rank: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    df = per_record.copy()
    aggs: dict[str, tuple[str, str]] = {
        "n": ("exact_match", "size"), "exact_match": ("exact_match", "mean"),
        "first_token_acc": ("first_token_correct", "mean"), "first_token_prob": ("first_token_prob", "mean"),
    }
    if rank:
        df["top1"] = df["rank"] == 1
        df["rr"] = 1.0 / df["rank"]
        df["chance"] = 1.0 / df["n_candidates"]
        aggs.update({"top1": ("top1", "mean"), "mean_rank": ("rank", "mean"), "mrr": ("rr", "mean"),
                     "n_candidates": ("n_candidates", "mean"), "chance_top1": ("chance", "mean")})
    per_attribute = df.groupby(["model", "format", "attribute"], sort=False, as_index=False).agg(**aggs)
    metrics = [c for c in per_attribute.columns if c not in ("model", "format", "attribute", "n")]
    overall = per_attribute.groupby(["model", "format"], sort=False, as_index=False)[metrics].mean()
    overall.insert(2, "n", per_attribute.groupby(["model", "format"], sort=False)["n"].sum().to_numpy())
    return per_attribute, overall


def format_probe(
    models: ModelsArg,
    tokenizer: PreTrainedTokenizerBase,
    task_records: Sequence[Any],
    pretraining_records: Sequence[Any],
    *,
    paired: bool = True,
    rank: bool = True,
    max_candidates: Optional[int] = None,
    seed: int = 0,
    batch_size: int = EVAL_BATCH_SIZE,
) -> FormatProbeResult:
    """Score one model (or a name → model mapping) on the same facts in both formats.

    Args:
        models: a causal LM, or ``{"before": m0, "after": m1, ...}``.
        tokenizer: shared by all models.
        task_records: the facts in the task format (e.g. QA prompts).
        pretraining_records: the same facts in the pretraining format (e.g. the biography
            sentence up to the value).
        paired: keep only facts (``person_id``, ``attribute``) present in both (when both sets
            carry person ids), so both formats ask exactly the same facts.
        rank: also rank the truth within each attribute's candidate pool (costs one forward
            per candidate; cap it with ``max_candidates``).
        max_candidates, seed: see :func:`candidate_ranks`.
        batch_size: sequences per forward pass of the exact-match scoring.

    Returns:
        :class:`FormatProbeResult`.
    """
    task, pre = as_probe_records(task_records), as_probe_records(pretraining_records)
    if paired:
        task, pre = pair_facts(task, pre)
    if not task or not pre:
        raise InvalidDataError("format probe: no facts in one of the formats (after pairing by person and attribute)")
    frames = []
    for name, model in _as_models(models).items():
        for fmt, records in (("task", task), ("pretraining", pre)):
            frame = _score_format(model, tokenizer, records, fmt, rank, max_candidates, seed, batch_size)
            frame.insert(0, "model", name)
            frames.append(frame)
        logger.info("format probe of %s: %d facts per format", name, len(task))
    per_record = pd.concat(frames, ignore_index=True)
    per_attribute, overall = _summarize(per_record, rank)
    return FormatProbeResult(per_attribute, overall, per_record)
