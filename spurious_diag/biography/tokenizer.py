"""A word-level tokenizer for the Biography corpus, as a real ``PreTrainedTokenizerFast``.

Pieces: words (``\\w+``), single punctuation characters, and ``"\\n"`` as a token of its own
(a plain whitespace pre-tokenizer would drop it, and the QA prompt's ``"\\nAnswer:"`` would
lose its line break). Spaces are dropped, so ``" Boston"`` and ``"Boston"`` are the same token
and a prompt and a completion can be encoded separately and concatenated.

Special tokens, fixed ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3. Encoding with
``add_special_tokens=True`` (the default) prepends ``<bos>`` and appends nothing: a prompt
must stay open for generation. Code that trains on a full sequence appends ``<eos>`` itself
(:mod:`spurious_diag.training.records`). Decoding joins words with spaces and is lossy
(``"\\n"`` and spacing around punctuation change): compare token ids, not decoded strings.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Iterable, Union

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

__all__ = ["PAD", "BOS", "EOS", "UNK", "SPECIAL_TOKENS", "PIECE_PATTERN", "build_tokenizer", "load_tokenizer",
           "split_pieces"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
PIECE_PATTERN = r"\w+|[^\w\s]|\n"
_PIECE_RE = re.compile(PIECE_PATTERN)


def split_pieces(text: str) -> list[str]:
    """The pre-tokenizer's pieces of ``text``, in Python (for building the vocabulary).

    >>> split_pieces("Where did Alice Abbott work?\\nAnswer: Boston, MA")
    ['Where', 'did', 'Alice', 'Abbott', 'work', '?', '\\n', 'Answer', ':', 'Boston', ',', 'MA']
    """
    return _PIECE_RE.findall(text)


def build_tokenizer(
    texts: Iterable[str], *, min_count: int = 1, model_max_length: int = 256
) -> PreTrainedTokenizerFast:
    """Build the word-level tokenizer over ``texts``.

    Token ids: the four special tokens first, then pieces by decreasing count, ties broken by
    the piece string, so the vocabulary is a pure function of the multiset of pieces.

    Args:
        texts: the corpus (e.g. ``BiographyData.corpus_texts()``).
        min_count: pieces seen fewer times map to ``<unk>``.
        model_max_length: recorded in the tokenizer (longest sequence the model accepts).

    >>> tok = build_tokenizer(["Alice was born in Boston.", "Where?\\nAnswer: Boston"])
    >>> tok("Boston").input_ids == [tok.bos_token_id, tok.convert_tokens_to_ids("Boston")]
    True
    >>> tok.convert_ids_to_tokens(tok("?\\n", add_special_tokens=False).input_ids)
    ['?', '\\n']
    """
    counts = Counter(piece for text in texts for piece in split_pieces(text))
    for special in SPECIAL_TOKENS:
        counts.pop(special, None)
    pieces = sorted((p for p, c in counts.items() if c >= min_count), key=lambda p: (-counts[p], p))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({piece: len(SPECIAL_TOKENS) + i for i, piece in enumerate(pieces)})

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # invert=True keeps the matches (words, punctuation, "\n") and removes what lies between.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="removed", invert=True)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="right",
        model_max_length=model_max_length,
    )


def load_tokenizer(path: Union[str, "os.PathLike[str]"]) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained`` (offline, from a directory)."""
    return PreTrainedTokenizerFast.from_pretrained(os.fspath(path), local_files_only=True)
