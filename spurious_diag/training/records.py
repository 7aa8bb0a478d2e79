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

from transformers import PreTrainedTokenizerBase

from ..errors import CheckpointNotFoundError, InvalidDataError

__all__ = ["IGNORE_INDEX", "Record", "EncodedExample", "encode_qa", "encode_text", "encode_records", "read_records"]

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


def _fields(record: Record) -> Mapping[str, Any]:
    if isinstance(record, Mapping):
        return record
    if hasattr(record, "prompt") and hasattr(record, "completion"):
        return {"prompt": record.prompt, "completion": record.completion}
    raise InvalidDataError(f"not a training record: {type(record).__name__}")


def encode_records(tokenizer: PreTrainedTokenizerBase, records: Sequence[Record]) -> list[EncodedExample]:
    """Encode QA records (``{"prompt", "completion"}`` or objects with those attributes) and text records
    (``{"text"}``), each with its own loss mask. Logs how many sequences hold ``<unk>``.

    Raises:
        InvalidDataError: a record has neither ``text`` nor ``prompt`` + ``completion``.
    """
    encoded = []
    for i, record in enumerate(records):
        fields = _fields(record)
        if "prompt" in fields and "completion" in fields:
            encoded.append(encode_qa(tokenizer, str(fields["prompt"]), str(fields["completion"])))
        elif "text" in fields:
            encoded.append(encode_text(tokenizer, str(fields["text"])))
        else:
            raise InvalidDataError(f"record {i} has neither 'text' nor 'prompt' and 'completion': {sorted(fields)}")
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
            if kind == "any" and "text" in obj and "prompt" not in obj:
                if not isinstance(obj["text"], str) or not obj["text"]:
                    raise InvalidDataError(f"line {lineno}: 'text' must be a non-empty string", path)
                records.append({"text": obj["text"]})
                continue
            for key in ("prompt", "completion"):
                if key not in obj:
                    raise InvalidDataError(f"line {lineno} has no '{key}' field", path)
                if not isinstance(obj[key], str):
                    raise InvalidDataError(f"line {lineno}: '{key}' must be a string", path)
            if not obj["completion"].strip():
                raise InvalidDataError(f"line {lineno} has an empty completion", path)
            records.append({k: obj[k] for k in obj if isinstance(obj[k], (str, int, float))})
    if not records:
        raise InvalidDataError("no records", path)
    return records
