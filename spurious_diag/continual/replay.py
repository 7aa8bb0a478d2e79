"""REPLAY: mix a fraction of earlier tasks' training examples into a later task's."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from ..errors import UsageError

__all__ = ["replay_count", "replay_mix"]

T = TypeVar("T")


def replay_count(fraction: float, n_old: int) -> int:
    """Old examples replayed: ``round(fraction · n_old)``, at least 1 when there are any.

    >>> replay_count(0.1, 1200), replay_count(0.001, 10), replay_count(0.5, 0)
    (120, 1, 0)
    """
    if not 0 < fraction <= 1:
        raise UsageError(f"fraction must be in (0, 1], got {fraction}")
    return min(n_old, max(1, round(fraction * n_old))) if n_old else 0


def replay_mix(new: Sequence[T], old: Sequence[T], fraction: float, *, seed: int) -> list[T]:
    """``new`` followed by ``replay_count(fraction, len(old))`` records of ``old``.

    The old records are drawn without replacement by a ``random.Random(seed)`` of their own
    (nothing global); the training run shuffles the mix, so old and new examples share
    batches in proportion.

    Args:
        new: the later task's training records.
        old: the earlier tasks' training records, pooled.
        fraction: share of ``old`` that is replayed, in (0, 1].
        seed: the draw's seed.
    """
    chosen = random.Random(seed).sample(range(len(old)), replay_count(fraction, len(old)))
    return [*new, *(old[i] for i in sorted(chosen))]
