"""How an audit measures: :class:`AuditOptions`, checked once when it is built.

Standard library only, so that the command line can build its flags from these fields
without importing torch (``spurious-diag audit --help`` answers at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..errors import UsageError

__all__ = ["AuditOptions", "MIN_SNR", "PAIR_SCHEMES", "WORKING_DTYPES", "parse_rank"]

PAIR_SCHEMES = ("all", "consecutive", "trajectory")
WORKING_DTYPES = ("float32", "float64")
# Below this ‖ΔW‖_F / noise_fro an update is below the noise floor: the planted measurements that
# set it are in spurious_diag.updates.floors.
MIN_SNR = 2.0


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
        noise_floor: model the rounding noise of the stored weights (DESIGN.md §2b): ``noise_fro``
            and ``snr`` per update, bases cut at the edge of that noise, and updates with
            ``snr`` < ``min_snr`` (or no direction above the edge) reported as below the noise
            floor, without angles. False measures as if the stored values were exact.
        min_snr: the snr below which an update is below the noise floor.
        paper_angles: also compute the paper's weight-view quantity (z-scored updates, 99% energy,
            hidden-space orientation, mean one-sided angle; :mod:`spurious_diag.geometry.paper`) in
            columns of its own (exact SVDs: slower).

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
    noise_floor: bool = field(default=True, metadata={
        "help": "take the stored values as exact: no rounding-noise floor under the updates",
        "negative": "--no-noise-floor"})
    min_snr: float = field(default=MIN_SNR, metadata={
        "help": "updates with ‖ΔW‖/rounding noise below this are below the noise floor (no angles)"})
    paper_angles: bool = field(default=False, metadata={
        "help": "also the paper's weight-view angle (z-scored, 99%% energy, hidden space) in paper_* columns"})

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
        if not self.min_snr >= 0:
            raise UsageError(f"min_snr must be >= 0, got {self.min_snr}")
        if self.chunk_bytes < 1:
            raise UsageError(f"chunk_bytes must be >= 1, got {self.chunk_bytes}")
        if self.modules is not None:
            try:
                re.compile(self.modules)
            except re.error as exc:
                raise UsageError(f"invalid --modules regex {self.modules!r}: {exc}") from None
