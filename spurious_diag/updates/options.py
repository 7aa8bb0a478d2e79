"""How an audit measures: :class:`AuditOptions`, checked once when it is built.

Standard library only, so that the command line can build its flags from these fields
without importing torch (``spurious-diag audit --help`` answers at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..errors import UsageError

__all__ = ["AuditOptions", "PAIR_SCHEMES", "WORKING_DTYPES", "parse_rank"]

PAIR_SCHEMES = ("all", "consecutive", "trajectory")
WORKING_DTYPES = ("float32", "float64")


def parse_rank(text: str) -> Union[int, str]:
    """A ``--rank`` value: an integer, or ``energy``.

    >>> parse_rank("16"), parse_rank("energy")
    (16, 'energy')
    """
    text = text.strip()
    if text == "energy":
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"rank must be a positive integer or 'energy', got {text!r}") from None


def _dtype_name(value: Any) -> str:
    """``torch.float64`` or ``"float64"`` → ``"float64"`` (torch is not imported here)."""
    return str(value).removeprefix("torch.")


@dataclass(frozen=True)
class AuditOptions:
    """How to measure. Defaults follow DESIGN.md §1–2.

    Attributes:
        base: measure every update from CKPT_0 instead of a chain.
        rank: singular vectors per update basis (fixed r), or ``"energy"`` for the energy rank.
        energy: energy fraction for ``rank="energy"``; max_rank caps it.
        pairs: ``all``, ``consecutive`` or ``trajectory`` (see :func:`~.plan.plan_pairs`).
        modules: regex searched in the stored name and the normalized module; ``None`` keeps all.
        device: where SVDs run (``cpu`` or ``cuda``); I/O and the Gram pass stay on the CPU.
        dtype: working float dtype, ``"float32"`` or ``"float64"`` (for reference runs and
            tests); a ``torch.dtype`` is accepted and stored by name.
        skip_mismatched: report tensors whose names or shapes differ as skipped rows instead of raising.
        angles: compute singular bases and principal angles; ``False`` gives a norms-only
            audit (sizes and cosines from the streamed Gram pass, no SVD).
        intruders: also count intruder dimensions (exact SVD of whole weights: slow).
        chunk_bytes: memory budget of one Gram-pass chunk (all checkpoints' rows together).
        seed: seed of the randomized SVD's test matrices.

    Raises:
        UsageError: a value out of range (named in the message).
    """

    base: bool = field(default=False, metadata={"help": "measure every update from CKPT_0 (base->A vs base->B)"})
    rank: Union[int, str] = field(default=16, metadata={
        "help": "singular vectors per update, or 'energy' (90%% energy rank)", "parse": parse_rank, "metavar": "K"})
    energy: float = field(default=0.9, metadata={"cli": False})
    max_rank: int = field(default=64, metadata={"cli": False})
    pairs: str = field(default="all", metadata={
        "help": "which pairs of updates to compare (default: all; trajectory for a checkpoint-N dir)",
        "choices": PAIR_SCHEMES})
    modules: Optional[str] = field(default=None, metadata={
        "help": "only tensors whose name or module matches REGEX", "metavar": "REGEX"})
    device: str = field(default="cpu", metadata={"help": "where SVDs run: cpu (default) or cuda"})
    dtype: str = field(default="float32", metadata={"cli": False})
    skip_mismatched: bool = field(default=False, metadata={
        "help": "report tensors whose names/shapes differ as skipped rows instead of failing"})
    angles: bool = field(default=True, metadata={
        "help": "norms only: update sizes and cosines, no SVD (fast first look at big models)",
        "negative": "--no-angles"})
    intruders: bool = field(default=False, metadata={"help": "also count intruder dimensions (slow: exact SVDs)"})
    chunk_bytes: int = field(default=64 * 2**20, metadata={"cli": False})
    seed: int = field(default=0, metadata={"help": "seed of the randomized SVD"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _dtype_name(self.dtype))
        if self.rank != "energy" and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise UsageError(f"rank must be a positive integer or 'energy', got {self.rank!r}")
        if not 0.0 < self.energy <= 1.0:
            raise UsageError(f"energy must be in (0, 1], got {self.energy}")
        if self.max_rank < 1:
            raise UsageError(f"max_rank must be >= 1, got {self.max_rank}")
        if self.pairs not in PAIR_SCHEMES:
            raise UsageError(f"pairs must be one of {PAIR_SCHEMES}, got {self.pairs!r}")
        if self.dtype not in WORKING_DTYPES:
            raise UsageError(f"dtype must be one of {WORKING_DTYPES}, got {self.dtype!r}")
        if self.chunk_bytes < 1:
            raise UsageError(f"chunk_bytes must be >= 1, got {self.chunk_bytes}")
        if self.modules is not None:
            try:
                re.compile(self.modules)
            except re.error as exc:
                raise UsageError(f"invalid --modules regex {self.modules!r}: {exc}") from None
