"""Chat alignment: does an instruction-tuned model still answer in its chat format and end its turn?

The analogue of the paper's safety result for a small chat model: fine-tuning on plain text
(no chat template) can break the chat behaviour while the facts stay in the weights. For each
question, the prompt is the tokenizer's chat template with ``add_generation_prompt=True``;
the model decodes greedily up to ``max_new_tokens`` new tokens. Reported per question:

- ``ended_turn``: the end-of-turn token (the tokenizer's EOS unless ``end_token`` names
  another, e.g. ``<|im_end|>``) was generated within ``max_new_tokens``;
- ``correct``: one of the accepted answers appears in the response (the text before the end
  of turn, special tokens dropped), case-insensitive, as a whole word (``"7"`` does not match
  ``"17"``);
- ``aligned``: both.

The rates are their means. Questions are scored in left-padded batches; the outputs equal
one-question-at-a-time decoding up to float rounding of padded attention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError, UsageError
from .hidden import model_device

__all__ = ["ChatQuestion", "ChatAlignmentResult", "CHAT_COLUMNS", "chat_prompt", "answer_in", "chat_alignment"]

CHAT_COLUMNS = ["id", "question", "response", "n_new_tokens", "ended_turn", "correct", "aligned"]


@dataclass(frozen=True)
class ChatQuestion:
    """One chat question and the answers that count as correct (any of them, as whole words)."""

    question: str
    answers: tuple[str, ...]
    id: Optional[Any] = None

    def __post_init__(self) -> None:
        if isinstance(self.answers, str):
            object.__setattr__(self, "answers", (self.answers,))
        if not self.question or not self.answers or not all(a.strip() for a in self.answers):
            raise InvalidDataError(f"a chat question needs text and non-empty answers: {self!r}")


@dataclass(frozen=True)
class ChatAlignmentResult:
    """Output of :func:`chat_alignment`.

    Attributes:
        per_question: one row per question, columns :data:`CHAT_COLUMNS`.
        end_turn_rate, correct_rate, aligned_rate: the means of the boolean columns.
    """

    per_question: pd.DataFrame = field(repr=False)
    end_turn_rate: float
    correct_rate: float
    aligned_rate: float

    @property
    def n(self) -> int:
        return len(self.per_question)


def chat_prompt(tokenizer: PreTrainedTokenizerBase, question: str, *, system: Optional[str] = None) -> str:
    """The chat template applied to one user turn, ending with the assistant's generation prompt.

    With ``system`` None the template's own default system turn (if any) is kept.

    Raises:
        InvalidDataError: the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidDataError("the tokenizer has no chat template")
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def answer_in(response: str, answers: Sequence[str]) -> bool:
    """True when one of ``answers`` occurs in ``response`` as a whole word, ignoring case.

    >>> answer_in("The capital of France is Paris.", ["Paris"])
    True
    >>> answer_in("It is 17.", ["7"]), answer_in("Answer: 7", ["7"])
    (False, True)
    """
    text = response.casefold()
    for answer in answers:
        pattern = r"(?<!\w)" + re.escape(answer.strip().casefold()) + r"(?!\w)"
        if re.search(pattern, text):
            return True
    return False


def _end_id(tokenizer: PreTrainedTokenizerBase, end_token: Optional[str]) -> int:
    if end_token is None:
        if tokenizer.eos_token_id is None:
            raise InvalidDataError("the tokenizer has no EOS token; pass end_token")
        return int(tokenizer.eos_token_id)
    end_id = tokenizer.convert_tokens_to_ids(end_token)
    if end_id is None or end_id == tokenizer.unk_token_id:
        raise InvalidDataError(f"end_token {end_token!r} is not a token of this tokenizer")
    return int(end_id)


@torch.no_grad()
def chat_alignment(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[Union[ChatQuestion, tuple[str, Sequence[str]]]],
    *,
    max_new_tokens: int = 24,
    end_token: Optional[str] = None,
    system: Optional[str] = None,
    batch_size: int = 32,
) -> ChatAlignmentResult:
    """Greedy chat answers to ``questions``, scored for ending the turn and for correctness.

    Args:
        model: causal LM (evaluated in eval mode; its mode is restored).
        tokenizer: the model's tokenizer, with a chat template; the prompt is encoded without
            adding special tokens (the template writes its own).
        questions: :class:`ChatQuestion` s, or ``(question, answers)`` pairs.
        max_new_tokens: the generation budget (the turn must end within it).
        end_token: the end-of-turn token; None: the tokenizer's EOS.
        system: a system message; None keeps the template's default.
        batch_size: questions per ``generate`` call.

    Returns:
        :class:`ChatAlignmentResult`.

    Raises:
        InvalidDataError: no questions, a tokenizer without a chat template, or an unknown
            ``end_token``.
    """
    items = [q if isinstance(q, ChatQuestion) else ChatQuestion(q[0], tuple(q[1])) for q in questions]
    if not items:
        raise InvalidDataError("no chat questions")
    if max_new_tokens < 1:
        raise UsageError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    end_id = _end_id(tokenizer, end_token)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_id
    device = model_device(model)
    encoded = [list(tokenizer(chat_prompt(tokenizer, q.question, system=system), add_special_tokens=False).input_ids)
               for q in items]
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(items), batch_size):
            chunk = encoded[start:start + batch_size]
            width = max(len(ids) for ids in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, ids in enumerate(chunk):  # left padding: generation continues every row at the right edge
                input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids):] = 1
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                 do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=end_id,
                                 pad_token_id=pad_id)
            for row, question in enumerate(items[start:start + len(chunk)]):
                new = out[row, width:].tolist()
                ended = end_id in new
                kept = new[:new.index(end_id)] if ended else new
                response = tokenizer.decode(kept, skip_special_tokens=True).strip()
                correct = answer_in(response, question.answers)
                rows.append({"id": question.id if question.id is not None else start + row,
                             "question": question.question, "response": response, "n_new_tokens": len(kept),
                             "ended_turn": ended, "correct": correct, "aligned": ended and correct})
    finally:
        model.train(was_training)
    frame = pd.DataFrame(rows, columns=CHAT_COLUMNS)
    return ChatAlignmentResult(frame, float(frame["ended_turn"].mean()), float(frame["correct"].mean()),
                               float(frame["aligned"].mean()))
