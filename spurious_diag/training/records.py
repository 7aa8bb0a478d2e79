"""Training records: reading ``{"prompt", "completion"}`` / ``{"text"}`` JSONL and encoding it.

A prompt/completion record becomes ``prompt completion <eos>`` (with the tokenizer's own
special tokens before the prompt, e.g. ``<bos>``) with the loss on the completion tokens and
``<eos>`` only (labels −100 on the prompt); a text record becomes ``text <eos>`` with the loss
on every token.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Union

import torch
from transformers import PreTrainedTokenizerBase

from ..errors import CheckpointNotFoundError, InvalidDataError

__all__ = ["IGNORE_INDEX", "Record", "EncodedExample", "PaddingCollator", "check_record", "encode_qa", "encode_text",
           "encode_records", "read_records"]

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100

# A mapping with "prompt"/"completion" (or "text"), or any object with those attributes
# (e.g. ``biography.texts.QARecord``).
Record = Union[Mapping[str, Any], Any]


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of one training sequence and its labels (same length; −100 = no loss)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class PaddingCollator:
    """Right-pads a batch to its longest sequence.

    Returns ``input_ids`` (B×T, pad id), ``attention_mask`` (B×T, 1 on real tokens) and
    ``labels`` (B×T, −100 on padding), all int64.

    >>> batch = PaddingCollator(pad_token_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
    ...                                          {"input_ids": [5], "labels": [5]}])
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist(), batch["labels"].tolist()
    ([[5, 6, 7], [5, 0, 0]], [[1, 1, 1], [1, 0, 0]], [[-100, 6, 7], [5, -100, -100]])
    """

    pad_token_id: int

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        labels = torch.full((len(features), length), IGNORE_INDEX, dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
            attention_mask[row, :n] = 1
            labels[row, :n] = torch.tensor(f.get("labels", f["input_ids"]), dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def encode_qa(tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str) -> EncodedExample:
    """``<bos> prompt completion <eos>``, loss on ``completion <eos>`` only.

    Prompt and completion are tokenized separately and concatenated, so the boundary is
    exactly where the prompt ends (for the word-level tokenizer this equals tokenizing the
    concatenated string). The prompt goes through the tokenizer's own special-token handling
    (``<bos>`` for the Biography tokenizer).
    """
    prompt_ids = list(tokenizer(prompt).input_ids)
    completion_ids = list(tokenizer(completion, add_special_tokens=False).input_ids) + [tokenizer.eos_token_id]
    if len(completion_ids) == 1:
        raise InvalidDataError(f"empty completion for prompt {prompt!r}")
    return EncodedExample(tuple(prompt_ids + completion_ids),
                          tuple([IGNORE_INDEX] * len(prompt_ids) + completion_ids))


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> EncodedExample:
    """``<bos> text <eos>`` with the loss on every token (pretraining)."""
    ids = list(tokenizer(text).input_ids) + [tokenizer.eos_token_id]
    return EncodedExample(tuple(ids), tuple(ids))


def check_record(record: Any, label: str, *, allow_text: bool = False) -> dict[str, Any]:
    """The fields of one record, validated: ``prompt`` and ``completion`` strings (a non-empty
    completion), plus the optional ``attribute`` and ``person_id`` and other scalar fields; or,
    with ``allow_text``, a ``{"text": non-empty string}`` record.

    ``record`` is a mapping or an object with those attributes (e.g. a Biography ``QARecord``).
    This is the one validator of the package's records: JSONL lines, training records and probe
    records all pass through it.

    Raises:
        InvalidDataError: a missing field, a non-string prompt or completion, an empty
            completion, or not a record at all; the message starts with ``label`` (e.g. ``line 3``).

    >>> check_record({"prompt": "Q?", "completion": " A", "person_id": 3}, "record 0")
    {'prompt': 'Q?', 'completion': ' A', 'person_id': 3}
    """
    if isinstance(record, Mapping):
        fields = dict(record)
    elif hasattr(record, "prompt") and hasattr(record, "completion"):
        fields = {key: getattr(record, key) for key in ("prompt", "completion", "attribute", "person_id")
                  if getattr(record, key, None) is not None}
    else:
        raise InvalidDataError(f"{label} is not a prompt/completion record: {type(record).__name__}")
    if allow_text and "text" in fields and "prompt" not in fields:
        if not isinstance(fields["text"], str) or not fields["text"]:
            raise InvalidDataError(f"{label}: 'text' must be a non-empty string")
        return {"text": fields["text"]}
    for key in ("prompt", "completion"):
        if key not in fields:
            raise InvalidDataError(f"{label} has no '{key}' field")
        if not isinstance(fields[key], str):
            raise InvalidDataError(f"{label}: '{key}' must be a string")
    if not fields["completion"].strip():
        raise InvalidDataError(f"{label} has an empty completion")
    return {k: v for k, v in fields.items() if isinstance(v, (str, int, float))}


def encode_records(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record]) -> list[EncodedExample]:
    """Encode QA records (``{"prompt", "completion"}`` or objects with those attributes) and text records
    (``{"text"}``), each with its own loss mask. Logs how many sequences hold ``<unk>``.

    Raises:
        InvalidDataError: a record has neither ``text`` nor ``prompt`` + ``completion``.
    """
    encoded = []
    for i, record in enumerate(records):
        fields = check_record(record, f"record {i}", allow_text=True)
        if "text" in fields:
            encoded.append(encode_text(tokenizer, fields["text"]))
        else:
            encoded.append(encode_qa(tokenizer, fields["prompt"], fields["completion"]))
    unk = tokenizer.unk_token_id
    if unk is not None:
        n_unk = sum(unk in e.input_ids for e in encoded)
        if n_unk:
            logger.warning("%d of %d sequences contain the unknown token", n_unk, len(encoded))
    return encoded


def read_records(path: Union[str, "os.PathLike[str]"], *, kind: str = "qa") -> list[dict[str, str]]:
    """Read and validate a JSONL file of training records.

    Args:
        kind: ``"qa"`` (each line ``{"prompt": str, "completion": str}``, completion not empty)
            or ``"any"`` (also ``{"text": str}`` lines).

    Raises:
        CheckpointNotFoundError: the file does not exist.
        InvalidDataError: a line that is not UTF-8, not a JSON object, misses a field, has a
            non-string or empty completion; or a file without records. The message names the
            file and the line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointNotFoundError("no such data file", path)
    records = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise InvalidDataError(f"line {lineno} is not UTF-8 (byte {exc.start})", path) from None
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidDataError(f"line {lineno} is not valid JSON ({exc.msg})", path) from None
            if not isinstance(obj, dict):
                raise InvalidDataError(f"line {lineno} is not a JSON object", path)
            try:
                records.append(check_record(obj, f"line {lineno}", allow_text=kind == "any"))
            except InvalidDataError as exc:
                raise InvalidDataError(exc.reason, path) from None
    if not records:
        raise InvalidDataError("no records", path)
    return records
