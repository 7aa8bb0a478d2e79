"""Continual-learning methods compared by the sequential runner: SEQ, Freeze(k), REPLAY(f), MIX(f), EWC(λ), GP,
LAMOL(λ).

A :class:`Method` is plain configuration (hashable, picklable, printable); what it does to a
run lives in :mod:`.runner` (freezing, replay mixing) and :mod:`.ewc` (the penalty).

- ``SEQ``: plain sequential fine-tuning, nothing frozen, nothing replayed.
- ``Freeze(k)``: for every task after the first, the embeddings and blocks 0..k−1 are frozen
  (``freeze_bottom_layers(model, k, embeddings=True)``); Freeze(0) freezes the embeddings alone.
- ``REPLAY(f)``: the paper's batch-level replay. A buffer keeps a fraction f of each earlier task's
  training records; every batch of B new examples gets ⌊B/2⌋ of them, drawn with replacement
  (:mod:`.replay`). REPLAY(0) is SEQ.
- ``MIX(f)``: each later task's training set gets ``round(f · n_old)`` examples drawn once from the
  earlier tasks' training records (``n_old`` of them), see :func:`.replay.replay_mix`.
- ``EWC(λ)``: the paper's EWC. At the end of each task but the last, the Fisher of its training
  data (batch-size-weighted squared batch-mean gradients) joins a running average over the tasks,
  anchored at the latest model; later tasks add ``λ/2 · Σ_i F_i (θ_i − θ*_i)²`` to the loss
  (:mod:`.ewc`). EWC(0) is SEQ.
- ``GP``: gradient projection. Before each task after the first, short preliminary runs give the
  direction D the task first moves the weights in (:mod:`.preliminary`); the task then trains with
  each gradient's component along D removed, row by row (:mod:`.projection`).
- ``LAMOL(λ)``: every task trains on its QA loss plus λ × a language-model loss over the generation
  token, question and answer; before each task after the first, the model generates pseudo-samples
  of the earlier tasks from the generation token, and the well-formed ones join the task's data
  (:mod:`.lamol`). LAMOL(0) without pseudo-samples is SEQ.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

from ..errors import UsageError

__all__ = ["METHOD_KINDS", "Method", "parse_method"]

METHOD_KINDS: tuple[str, ...] = ("seq", "freeze", "replay", "mix", "ewc", "gp", "lamol")
_NO_PARAMETER = ("seq", "gp")
_NAMES = {"seq": "SEQ", "freeze": "Freeze", "replay": "REPLAY", "mix": "MIX", "ewc": "EWC", "gp": "GP", "lamol": "LAMOL"}


@dataclass(frozen=True)
class Method:
    """One continual-learning method and its parameter.

    Attributes:
        kind: ``"seq"``, ``"freeze"``, ``"replay"``, ``"mix"``, ``"ewc"``, ``"gp"`` or ``"lamol"``.
        param: None for SEQ and GP; blocks frozen (int ≥ 0) for Freeze; replay fraction (0 ≤ f ≤ 1)
            for REPLAY and MIX; λ (≥ 0) for EWC and LAMOL.

    >>> Method.freeze(2).label, Method.seq().label, Method.replay(0.1).label, Method.ewc(1e6).label, Method.gp().label
    ('Freeze(2)', 'SEQ', 'REPLAY(0.1)', 'EWC(1e6)', 'GP')
    """

    kind: str
    param: Optional[float] = None

    def __post_init__(self) -> None:
        if self.kind not in METHOD_KINDS:
            raise UsageError(f"unknown method {self.kind!r}; expected one of {METHOD_KINDS}")
        if self.kind in _NO_PARAMETER:
            if self.param is not None:
                raise UsageError(f"{_NAMES[self.kind]} takes no parameter")
        elif self.param is None:
            raise UsageError(f"{self.kind} needs a parameter")
        elif self.kind == "freeze" and (self.param < 0 or int(self.param) != self.param):
            raise UsageError(f"Freeze(k) needs an integer k >= 0, got {self.param}")
        elif self.kind in ("replay", "mix") and not 0 <= self.param <= 1:
            raise UsageError(f"{_NAMES[self.kind]}(f) needs 0 <= f <= 1, got {self.param}")
        elif self.kind in ("ewc", "lamol") and not (self.param >= 0 and math.isfinite(self.param)):
            raise UsageError(f"{_NAMES[self.kind]}(lambda) needs a finite lambda >= 0, got {self.param}")

    @classmethod
    def seq(cls) -> "Method":
        return cls("seq")

    @classmethod
    def freeze(cls, k: int) -> "Method":
        return cls("freeze", int(k))

    @classmethod
    def replay(cls, fraction: float) -> "Method":
        return cls("replay", float(fraction))

    @classmethod
    def mix(cls, fraction: float) -> "Method":
        return cls("mix", float(fraction))

    @classmethod
    def ewc(cls, lam: float) -> "Method":
        return cls("ewc", float(lam))

    @classmethod
    def gp(cls) -> "Method":
        return cls("gp")

    @classmethod
    def lamol(cls, lam: float) -> "Method":
        return cls("lamol", float(lam))

    @property
    def frozen_blocks(self) -> Optional[int]:
        """k for Freeze(k), None for the other methods."""
        return int(self.param) if self.kind == "freeze" else None  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """``SEQ``, ``Freeze(k)``, ``REPLAY(f)``, ``MIX(f)``, ``EWC(λ)``, ``GP``, ``LAMOL(λ)`` (numbers in ``%g`` form, ``1e5`` for 100000)."""
        if self.kind in _NO_PARAMETER:
            return _NAMES[self.kind]
        name = _NAMES[self.kind]
        return f"{name}({_short_number(float(self.param))})"  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.label


def _short_number(value: float) -> str:
    """``%g``, with large round numbers as ``1e5`` rather than ``100000`` or ``1e+05``.

    >>> [_short_number(v) for v in (3, 0.1, 100.0, 1e5, 2.5e6, 123456.0)]
    ['3', '0.1', '100', '1e5', '2.5e6', '123456']
    """
    text = f"{value:g}"
    if "e" not in text and abs(value) >= 1e4:
        mantissa, exponent = f"{value:e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        if len(mantissa.replace("-", "").replace(".", "")) <= 3:
            text = f"{mantissa}e{int(exponent)}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


_LABEL = re.compile(r"^\s*(seq|freeze|replay|mix|ewc|gp|lamol)\s*(?:\(\s*([^()\s]+)\s*\))?\s*$", re.IGNORECASE)


def parse_method(text: str) -> Method:
    """The inverse of :attr:`Method.label` (case-insensitive).

    >>> parse_method("freeze(3)") == Method.freeze(3), parse_method("EWC(1e3)").param, parse_method("gp").label
    (True, 1000.0, 'GP')

    Raises:
        UsageError: not a method label.
    """
    match = _LABEL.match(text)
    if not match:
        raise UsageError(f"not a method: {text!r} (expected SEQ, Freeze(k), REPLAY(f), MIX(f), EWC(lambda), GP or LAMOL(lambda))")
    kind, param = match.group(1).lower(), match.group(2)
    if kind in _NO_PARAMETER:
        if param is not None:
            raise UsageError(f"{_NAMES[kind]} takes no parameter")
        return Method(kind)
    if param is None:
        raise UsageError(f"{text!r} needs a parameter in parentheses")
    try:
        value = float(param)
    except ValueError:
        raise UsageError(f"{text!r}: parameter {param!r} is not a number") from None
    return Method.freeze(int(value)) if kind == "freeze" and value == int(value) else Method(kind, value)
