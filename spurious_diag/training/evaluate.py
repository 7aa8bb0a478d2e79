"""Per-attribute greedy exact match, first-token accuracy and probability, in one batched pass.

For a record with answer tokens a_1..a_n (the completion, then ``<eos>`` unless
``append_eos=False``), greedy decoding from the prompt reproduces the answer exactly iff
every a_i is the argmax of the model's distribution given the prompt and a_1..a_{i−1}. That
is a teacher-forced condition, so one forward pass over ``<bos> prompt answer`` decides it for
a whole batch; :func:`greedy_generate_match` is the slow ``model.generate`` reference the
tests compare it with.

Reported per record: ``exact_match`` (all answer tokens argmax-correct), ``first_token_correct``
and ``first_token_prob`` (softmax probability of a_1). Per attribute: their means. The
headline number is the mean over attributes of the per-attribute exact match.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError
from .records import IGNORE_INDEX, PaddingCollator, Record, encode_qa

__all__ = ["EVAL_BATCH_SIZE", "EvalResult", "eval_mode", "score_records", "summarize_by_attribute", "evaluate_records",
           "greedy_generate_match", "answer_loss"]

# Sequences per forward pass when scoring. Records are sorted by length first, so smaller batches
# pad less, and the LM head runs on fewer positions (the union of the batch's answer positions).
# benchmarks/bench_eval_batch.py, one thread: SmolLM2-135M scored 240 Biography QA records 1.8x
# faster at 64 than at 256; on the 4-block model every size takes about a second either way.
EVAL_BATCH_SIZE = 64



@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode (no dropout) for the block, then back in the mode it was in, even on error.

    >>> layer = torch.nn.Dropout(0.5)
    >>> with eval_mode(layer):
    ...     layer.training
    False
    >>> layer.training
    True
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _record_fields(record: Record) -> tuple[str, str, str, Optional[int]]:
    if not isinstance(record, Mapping):  # e.g. biography.texts.QARecord
        return record.prompt, record.completion, getattr(record, "attribute", "all"), getattr(record, "person_id", None)
    attribute = str(record.get("attribute", "all"))
    return str(record["prompt"]), str(record["completion"]), attribute, record.get("person_id")


def _answer_ids(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str, append_eos: bool
) -> tuple[list[int], list[int]]:
    example = encode_qa(tokenizer, prompt, completion)
    ids, labels = list(example.input_ids), list(example.labels)
    if not append_eos:
        ids, labels = ids[:-1], labels[:-1]
    return ids, labels


def _keeps_logits(model: PreTrainedModel) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (computes the head at chosen positions only)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def _answer_logits(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   keep: torch.Tensor) -> torch.Tensor:
    """Float logits at positions ``keep`` (K ascending indices into 0..T−2): B×K×V.

    With a vocabulary of 49k (SmolLM2) the output head costs a fifth of a forward pass and its
    B×T×V logits dominate the memory; models that take ``logits_to_keep`` compute it at the K
    positions only (any head post-processing, e.g. soft-capping, still applies), others in full.
    """
    if _keeps_logits(model):
        return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                     logits_to_keep=keep).logits.float()
    return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, keep].float()


@torch.no_grad()
def score_records(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    append_eos: bool = True,
    batch_size: int = EVAL_BATCH_SIZE,
) -> pd.DataFrame:
    """Score each record with one teacher-forced forward pass per batch.

    Args:
        model: causal LM; evaluated as is (call ``model.eval()`` first if it has dropout).
        tokenizer: the model's tokenizer (adds BOS to the prompt, supplies EOS and PAD).
        records: :class:`~spurious_diag.biography.texts.QARecord` s or mappings with ``prompt``, ``completion`` and optionally
            ``attribute`` and ``person_id``.
        append_eos: the answer is ``completion <eos>`` (QA: the model must also stop); False
            for pretraining-format probes, whose sentence continues after the value.
        batch_size: sequences per forward pass.

    Returns:
        One row per record, in input order: ``person_id``, ``attribute``, ``n_answer_tokens``,
        ``exact_match`` (bool), ``first_token_correct`` (bool), ``first_token_prob`` (float).
    """
    collate = PaddingCollator(pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device
    fields = [_record_fields(r) for r in records]
    encoded = [_answer_ids(tokenizer, prompt, completion, append_eos) for prompt, completion, _, _ in fields]
    # Batches of similar length waste less compute on padding (a third less on Biography QA);
    # the rows come back in input order.
    order = sorted(range(len(records)), key=lambda i: len(encoded[i][0]))
    rows: list[Optional[dict[str, Any]]] = [None] * len(records)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate([{"input_ids": encoded[i][0], "labels": encoded[i][1]} for i in chunk])
        # Position t predicts token t+1; only the positions that predict an answer token are scored.
        targets = batch["labels"][:, 1:].to(device)
        keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)  # K positions, ascending
        logits = _answer_logits(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), keep)
        targets = targets[:, keep]
        answer = targets != IGNORE_INDEX  # B×K
        correct = (logits.argmax(dim=-1) == targets) | ~answer
        exact = correct.all(dim=1)
        first = answer.float().argmax(dim=1)  # index of the first answer position, B
        rows_idx = torch.arange(len(chunk), device=device)
        first_logits = logits[rows_idx, first]  # B×V
        first_target = targets[rows_idx, first]
        first_prob = torch.softmax(first_logits, dim=-1)[rows_idx, first_target]
        first_correct = first_logits.argmax(dim=-1) == first_target
        n_answer = answer.sum(dim=1)
        for j, i in enumerate(chunk):
            _, _, attribute, person_id = fields[i]
            rows[i] = {
                "person_id": person_id,
                "attribute": attribute,
                "n_answer_tokens": int(n_answer[j]),
                "exact_match": bool(exact[j]),
                "first_token_correct": bool(first_correct[j]),
                "first_token_prob": float(first_prob[j]),
            }
    return pd.DataFrame(rows, columns=["person_id", "attribute", "n_answer_tokens", "exact_match",
                                       "first_token_correct", "first_token_prob"])


def summarize_by_attribute(per_record: pd.DataFrame) -> pd.DataFrame:
    """One row per attribute (first-appearance order): ``attribute``, ``n``, ``exact_match``,
    ``first_token_acc``, ``first_token_prob`` (means over the attribute's records).
    """
    order = list(dict.fromkeys(per_record["attribute"]))
    grouped = per_record.groupby("attribute", sort=False)
    table = pd.DataFrame({
        "n": grouped.size(),
        "exact_match": grouped["exact_match"].mean(),
        "first_token_acc": grouped["first_token_correct"].mean(),
        "first_token_prob": grouped["first_token_prob"].mean(),
    }).reindex(order)
    return table.rename_axis("attribute").reset_index()


@dataclass(frozen=True)
class EvalResult:
    """Scores of one model on one record set.

    Attributes:
        per_attribute: :func:`summarize_by_attribute` of ``per_record``.
        per_record: :func:`score_records` output.
        exact_match: mean over attributes of the per-attribute exact match.
        first_token_acc: mean over attributes of the first-token accuracy.
    """

    per_attribute: pd.DataFrame = field(repr=False)
    per_record: pd.DataFrame = field(repr=False)
    exact_match: float
    first_token_acc: float


def evaluate_records(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    append_eos: bool = True,
    batch_size: int = EVAL_BATCH_SIZE,
) -> EvalResult:
    """:func:`score_records`, summarized per attribute and averaged over attributes."""
    if not records:
        raise InvalidDataError("no records to evaluate")
    with eval_mode(model):
        per_record = score_records(model, tokenizer, records, append_eos=append_eos, batch_size=batch_size)
    per_attribute = summarize_by_attribute(per_record)
    return EvalResult(per_attribute, per_record, float(per_attribute["exact_match"].mean()),
                      float(per_attribute["first_token_acc"].mean()))


@torch.no_grad()
def greedy_generate_match(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    append_eos: bool = True,
) -> list[bool]:
    """Reference: greedy ``model.generate`` per record (unbatched), compared by token ids.

    Generates ``len(answer)`` new tokens from ``<bos> prompt`` (stopping early at ``<eos>``) and
    checks that they equal the answer ids (completion, plus ``<eos>`` when ``append_eos``).
    Slow; for tests and spot checks of :func:`score_records`.
    """
    device = next(model.parameters()).device
    matches = []
    for record in records:
        prompt, completion, _, _ = _record_fields(record)
        ids, labels = _answer_ids(tokenizer, prompt, completion, append_eos)
        answer = [t for t in labels if t != IGNORE_INDEX]
        prompt_ids = torch.tensor([ids[: len(ids) - len(answer)]], device=device)
        out = model.generate(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            do_sample=False,
            max_new_tokens=len(answer),
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        generated = out[0, prompt_ids.shape[1]:].tolist()
        matches.append(generated == answer)
    return matches


@torch.no_grad()
def answer_loss(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    *,
    batch_size: int = EVAL_BATCH_SIZE,
) -> float:
    """Mean teacher-forced cross-entropy per answer token, in nats, over all ``records``.

    The answer tokens are those :func:`score_records` scores (the completion, then ``<eos>``);
    the mean is over tokens, not records, so longer answers weigh more. The model runs in eval
    mode (restored afterwards) without gradients.

    Args:
        model: causal LM.
        tokenizer: the model's tokenizer (adds BOS to the prompt, supplies EOS and PAD).
        records: :class:`~spurious_diag.biography.texts.QARecord` s or mappings with ``prompt`` and ``completion``.
        batch_size: sequences per forward pass.

    Raises:
        InvalidDataError: no records.
    """
    if not records:
        raise InvalidDataError("no records to evaluate")
    collate = PaddingCollator(pad_token_id=tokenizer.pad_token_id)
    device = next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    with eval_mode(model):
        for start in range(0, len(records), batch_size):
            features = []
            for record in records[start : start + batch_size]:
                prompt, completion, _, _ = _record_fields(record)
                ids, labels = _answer_ids(tokenizer, prompt, completion, True)
                features.append({"input_ids": ids, "labels": labels})
            batch = collate(features)
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                           use_cache=False).logits.float()
            # Position t predicts token t+1; padding and prompt positions carry IGNORE_INDEX.
            targets = batch["labels"][:, 1:].to(device)
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                     ignore_index=IGNORE_INDEX, reduction="sum")
            total += loss.double().cpu()
            count += int((targets != IGNORE_INDEX).sum())
    return float(total / count)
