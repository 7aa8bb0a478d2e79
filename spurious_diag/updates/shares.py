"""Share the tensors of an audit among the ranks of a process group, balanced by bytes.

The work of one tensor grows with its size (rows read from every checkpoint, one SVD per
update), so the ranks get equal bytes, not equal counts. Greedy longest-processing-time: the
largest tensor first, each to the least-loaded rank. When the last tensor went to rank r, r was
the least loaded, so no two ranks' bytes differ by more than the largest tensor's.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Shares", "share_by_size"]


@dataclass(frozen=True)
class Shares:
    """Which tensors each rank audits.

    Attributes:
        indices: per rank, the indices (into the list that was shared) of its tensors, ascending.
        nbytes: per rank, the bytes of its tensors.
    """

    indices: tuple[tuple[int, ...], ...]
    nbytes: tuple[int, ...]

    def to_dict(self) -> dict[str, list[int]]:
        return {"tensors_per_rank": [len(i) for i in self.indices], "bytes_per_rank": list(self.nbytes)}


def share_by_size(sizes: Sequence[int], world_size: int) -> Shares:
    """Split items of the given sizes (bytes, ≥ 0) among ``world_size`` ranks, balanced by size.

    Deterministic: ties go to the earlier item and the lower rank, so every rank computes the
    same shares from the same sizes.

    >>> share_by_size([5, 1, 4, 2], 2)
    Shares(indices=((0, 1), (2, 3)), nbytes=(6, 6))

    Raises:
        ValueError: ``world_size`` < 1 or a negative size.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if any(s < 0 for s in sizes):
        raise ValueError("sizes must be >= 0")
    loads = [(0, rank) for rank in range(world_size)]  # (bytes so far, rank): a min-heap
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, rank = heapq.heappop(loads)
        shares[rank].append(index)
        heapq.heappush(loads, (load + sizes[index], rank))
    nbytes = [0] * world_size
    for load, rank in loads:
        nbytes[rank] = load
    return Shares(tuple(tuple(sorted(s)) for s in shares), tuple(nbytes))
