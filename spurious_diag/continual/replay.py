"""Replay of earlier tasks' training examples while a later task trains.

Two variants:

- ``REPLAY(f)``, the paper's (DESIGN.md §2c): a buffer keeps a fraction f of each earlier task's
  training records (:func:`replay_buffer`); every batch of B new examples gets ⌊B/2⌋ buffer
  examples drawn with replacement (:class:`ReplayCollator`), so each step sees 1.5·B sequences.
- ``MIX(f)``: ``round(f · n_old)`` old records are added once to the new task's training set, which
  the run then shuffles (:func:`replay_mix`); old and new examples share batches in proportion.
"""

from __future__ import annotations

import hashlib
import random
from typing import Mapping, Sequence, TypeVar

import torch

from ..errors import UsageError
from ..training.records import EncodedExample, PaddingCollator

__all__ = ["replay_count", "replay_mix", "replay_buffer", "ReplayCollator"]

T = TypeVar("T")


def replay_count(fraction: float, n_old: int) -> int:
    """Old examples kept: ``round(fraction · n_old)``, at least 1 when there are any and f > 0.

    >>> replay_count(0.1, 1200), replay_count(0.001, 10), replay_count(0.5, 0), replay_count(0.0, 10)
    (120, 1, 0, 0)
    """
    if not 0 <= fraction <= 1:
        raise UsageError(f"fraction must be in [0, 1], got {fraction}")
    if fraction == 0 or not n_old:
        return 0
    return min(n_old, max(1, round(fraction * n_old)))


def replay_mix(new: Sequence[T], old: Sequence[T], fraction: float, *, seed: int) -> list[T]:
    """``new`` followed by ``replay_count(fraction, len(old))`` records of ``old`` (MIX(f)).

    The old records are drawn without replacement by a ``random.Random(seed)`` of their own
    (nothing global); the training run shuffles the mix, so old and new examples share
    batches in proportion.

    Args:
        new: the later task's training records.
        old: the earlier tasks' training records, pooled.
        fraction: share of ``old`` that is replayed, in [0, 1].
        seed: the draw's seed.
    """
    return [*new, *_draw(old, fraction, seed)]


def replay_buffer(old_tasks: Sequence[Sequence[T]], fraction: float, *, seed: int) -> list[T]:
    """REPLAY(f)'s buffer: ``replay_count(fraction, n)`` records of each earlier task (n of them),
    drawn without replacement by a ``random.Random(seed + i)`` for task i, in their original order.

    >>> buffer = replay_buffer([list("abcdefghij"), list("xyz")], 0.2, seed=0)
    >>> len(buffer), set(buffer[:2]) <= set("abcdefghij"), buffer[2] in "xyz", replay_buffer([list("ab")], 0, seed=0)
    (3, True, True, [])
    """
    return [record for i, records in enumerate(old_tasks) for record in _draw(records, fraction, seed + i)]


def _draw(records: Sequence[T], fraction: float, seed: int) -> list[T]:
    """``replay_count(fraction, len(records))`` of ``records``, drawn without replacement by a
    ``random.Random(seed)`` of their own (nothing global), in their original order."""
    chosen = random.Random(seed).sample(range(len(records)), replay_count(fraction, len(records)))
    return [records[i] for i in sorted(chosen)]


class ReplayCollator:
    """Pads a batch of B new examples together with ⌊B/2⌋ buffer examples drawn with replacement.

    The draw of a batch is seeded by ``seed`` and the batch's own token ids, not by a counter, so a
    resumed run draws what the uninterrupted one drew. The buffer examples come last in the batch.
    With an empty buffer it is :class:`~spurious_diag.training.records.PaddingCollator`.

    Args:
        buffer: the encoded replay buffer.
        pad_token_id: the tokenizer's pad id.
        seed: the draws' seed.
    """

    def __init__(self, buffer: Sequence[EncodedExample], pad_token_id: int, seed: int):
        self.buffer = list(buffer)
        self.pad = PaddingCollator(pad_token_id=pad_token_id)
        self.seed = seed

    def draw(self, features: Sequence[Mapping[str, Sequence[int]]]) -> list[int]:
        """The buffer indices replayed with this batch (⌊B/2⌋ of them, with replacement)."""
        count = len(features) // 2 if self.buffer else 0
        if not count:
            return []
        digest = hashlib.blake2b(str(self.seed).encode(), digest_size=8)
        for f in features:
            digest.update(torch.tensor(list(f["input_ids"]), dtype=torch.int64).numpy().tobytes())
            digest.update(b"|")
        generator = torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
        return torch.randint(len(self.buffer), (count,), generator=generator).tolist()

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, torch.Tensor]:
        extra = [{"input_ids": list(self.buffer[i].input_ids), "labels": list(self.buffer[i].labels)}
                 for i in self.draw(features)]
        return self.pad([*features, *extra])
