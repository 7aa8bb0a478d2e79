"""One error hierarchy for the whole package.

Every error a user can trigger with bad input is a :class:`SpuriousDiagError`.
The CLI turns it into one line on stderr and exits with the class's
``exit_code``; nothing else in the package decides exit codes.

Exit codes (documented in the README):

====  =====================================================
code  meaning
====  =====================================================
1     unexpected internal error (a bug: run with --debug)
2     bad command line or option (argparse, an unavailable --device)
3     input not found (missing path, empty dir, no weights)
4     corrupt or unreadable input (truncated file, bad header)
5     inputs that do not match each other (shapes, names, architectures)
6     invalid data values (NaN/Inf weights, malformed JSONL)
7     output problem (non-empty or unwritable --out dir)
====  =====================================================
"""

from __future__ import annotations

from os import PathLike
from typing import Optional, Union

__all__ = [
    "SpuriousDiagError",
    "CheckpointNotFoundError",
    "NoWeightsError",
    "CorruptCheckpointError",
    "MissingShardError",
    "UnsupportedFormatError",
    "MismatchError",
    "FrozenWeightsChangedError",
    "NonFiniteWeightError",
    "InvalidDataError",
    "OutputDirError",
    "UsageError",
]

PathArg = Union[str, "PathLike[str]", None]


class SpuriousDiagError(Exception):
    """Base class of every error the package raises on purpose.

    ``path`` is the file or directory at fault and ``tensor`` the tensor name,
    when there is one; both appear in the message.
    """

    exit_code = 1

    def __init__(self, message: str, path: PathArg = None, tensor: Optional[str] = None):
        self.path = None if path is None else str(path)
        self.tensor = tensor
        self.reason = message
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if tensor is not None:
            parts.append(f"tensor '{tensor}'")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class CheckpointNotFoundError(SpuriousDiagError, FileNotFoundError):
    """The path does not exist, or a directory holds nothing to load."""

    exit_code = 3


class NoWeightsError(CheckpointNotFoundError):
    """A directory exists but holds no weight file that the package can read."""


class MissingShardError(CheckpointNotFoundError):
    """A shard index names a file (or a tensor) that is not there."""


class CorruptCheckpointError(SpuriousDiagError):
    """A weight file exists but cannot be parsed: truncated, bad header, bad offsets."""

    exit_code = 4


class UnsupportedFormatError(SpuriousDiagError):
    """The input is readable but of a kind or architecture the package does not handle."""

    exit_code = 4


class MismatchError(SpuriousDiagError):
    """Inputs that must agree do not: tensor names, shapes, architectures, layer counts."""

    exit_code = 5


class FrozenWeightsChangedError(MismatchError):
    """A tensor that was frozen differs after training (its bytes before and after must match)."""


class NonFiniteWeightError(SpuriousDiagError):
    """A weight tensor holds NaN or Inf values."""

    exit_code = 6


class InvalidDataError(SpuriousDiagError, ValueError):
    """A data file (JSONL records, a config) has missing fields or bad values."""

    exit_code = 6


class OutputDirError(SpuriousDiagError):
    """The output directory is not empty (and --overwrite was not given) or not writable."""

    exit_code = 7


class UsageError(SpuriousDiagError, ValueError):
    """An option that cannot be honoured here (e.g. ``--device cuda`` without a GPU, a bad regex)."""

    exit_code = 2
