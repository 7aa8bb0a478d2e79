"""What a comparison compares: method families, the settings each may take, and their parsing.

``--methods "SEQ,Freeze,REPLAY(0.1),EWC,TaskVector,LAMOL(0.25),GP"`` names one family per item.
A family given with a setting (``REPLAY(0.1)``) runs that setting; one given bare (``EWC``) or
with alternatives (``EWC(1e7|1e8|1e9)``) has its setting chosen on the Task 0 validation people
among the alternatives (:data:`DEFAULT_GRIDS` for a bare name), exactly as Freeze's k is
(:mod:`.selection`). The families:

- ``SEQ``; ``Freeze(k)``; ``REPLAY(f)``; ``MIX(f)``; ``EWC(λ)``; ``LAMOL(λ)``: the continual
  methods of :mod:`spurious_diag.continual.methods`;
- ``GP(early-late[:rule])``: gradient projection with the preliminary runs' window (steps) and
  rule (``exact`` by default, or ``official``), :class:`~spurious_diag.continual.preliminary.PreliminaryRuns`;
- ``TaskVector(α)``: task-arithmetic negation of the SEQ run's update (no training of its own,
  :mod:`spurious_diag.continual.task_vector`); θ_k is chosen on validation with α.

Nothing here imports torch (the CLI's ``--help`` builds from it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from ..continual.methods import Method, parse_method
from ..continual.preliminary import PreliminaryRuns
from ..errors import UsageError

__all__ = ["FAMILIES", "DEFAULT_GRIDS", "Candidate", "MethodSpec", "parse_methods", "split_methods"]

FAMILIES: tuple[str, ...] = ("SEQ", "Freeze", "REPLAY", "MIX", "EWC", "GP", "LAMOL", "TaskVector")

# The alternatives of a family given bare. Freeze: the embeddings and 0..3 blocks (of the Biography
# model's 4); EWC: λ around where the Task 0 Fisher (Σ F ≈ 6e-4) starts to hold Task 0; GP: the
# paper's window 100..150 with the exact and the official rule, and the window scaled to where our
# dip happens (20..50); TaskVector: the paper's α range (0.16 … 1), with small α added, where the edit
# stays close enough to SEQ's new-task accuracy to be eligible at all.
DEFAULT_GRIDS: dict[str, tuple[str, ...]] = {
    "SEQ": ("",),
    "Freeze": ("0", "1", "2", "3"),
    "REPLAY": ("0.1",),
    "MIX": ("0.1",),
    "EWC": ("1e7", "1e8", "1e9"),
    "GP": ("20-50", "100-150", "100-150:official"),
    "LAMOL": ("0.25",),
    "TaskVector": ("0.05", "0.1", "0.15", "0.2", "0.4", "0.6", "0.8", "1"),
}

_ITEM = re.compile(r"^\s*([A-Za-z]+)\s*(?:\(\s*([^()]*?)\s*\))?\s*$")
_GP = re.compile(r"^(\d+)-(\d+)(?::(exact|official))?$")


@dataclass(frozen=True)
class Candidate:
    """One setting of one family: what a run (or, for TaskVector, an edit) needs.

    Attributes:
        family: one of :data:`FAMILIES`.
        setting: the setting as written (``"1"``, ``"1e8"``, ``"20-50:official"``; ``""`` for SEQ).
        method: the continual method trained (None for TaskVector, which edits SEQ's run).
        projection: GP's preliminary runs (None for the other families).
        alpha: TaskVector's α (None for the other families).
    """

    family: str
    setting: str
    method: Optional[Method] = None
    projection: Optional[PreliminaryRuns] = None
    alpha: Optional[float] = None

    @property
    def label(self) -> str:
        """``Freeze(1)``, ``EWC(1e8)``, ``GP(20-50)``, ``TaskVector(0.4)``, ``SEQ``."""
        return self.family if not self.setting else f"{self.family}({self.setting})"

    @property
    def slug(self) -> str:
        """The label as a file name (``freeze-1``, ``gp-20-50-official``)."""
        text = self.label.lower().replace("(", "-").replace(")", "").replace(":", "-").replace(".", "p")
        return re.sub(r"[^a-z0-9+-]", "", text)

    @property
    def trains(self) -> bool:
        """False for TaskVector (an edit of SEQ's checkpoints, scored but not trained)."""
        return self.family != "TaskVector"


def _number(text: str, family: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{family}({text}): {text!r} is not a number") from None


def make_candidate(family: str, setting: str) -> Candidate:
    """The :class:`Candidate` of ``family`` at ``setting`` (the text inside the parentheses).

    >>> make_candidate("EWC", "1e8").method.label, make_candidate("GP", "20-50").projection.early
    ('EWC(1e8)', 20)

    Raises:
        UsageError: an unknown family or a setting it cannot take.
    """
    if family == "SEQ":
        if setting:
            raise UsageError("SEQ takes no setting")
        return Candidate("SEQ", "", method=Method.seq())
    if family == "GP":
        match = _GP.match(setting)
        if not match:
            raise UsageError(f"GP({setting}): expected GP(EARLY-LATE) or GP(EARLY-LATE:official), e.g. GP(20-50)")
        early, late, rule = int(match.group(1)), int(match.group(2)), match.group(3) or "exact"
        text = f"{early}-{late}" + (":official" if rule == "official" else "")
        return Candidate("GP", text, method=Method.gp(), projection=PreliminaryRuns(early, late, rule=rule))
    if family == "TaskVector":
        alpha = _number(setting, family)
        if not 0 < alpha <= 2:
            raise UsageError(f"TaskVector({setting}): alpha must be in (0, 2]")
        return Candidate("TaskVector", f"{alpha:g}", alpha=alpha)
    if family not in FAMILIES:
        raise UsageError(f"unknown method {family!r}; expected one of {', '.join(FAMILIES)}")
    method = parse_method(f"{family}({_number(setting, family)!r})")
    return Candidate(family, method.label[len(family) + 1:-1], method=method)


@dataclass(frozen=True)
class MethodSpec:
    """One family and the settings it may take (one: fixed; several: chosen on validation).

    Attributes:
        family: one of :data:`FAMILIES`.
        candidates: its settings, in the order given.
    """

    family: str
    candidates: tuple[Candidate, ...]

    @property
    def chosen_on_validation(self) -> bool:
        return len(self.candidates) > 1


def _canonical_family(name: str) -> str:
    for family in FAMILIES:
        if family.lower() == name.lower():
            return family
    raise UsageError(f"unknown method {name!r}; expected one of {', '.join(FAMILIES)}")


def split_methods(text: str) -> list[str]:
    """Split ``"SEQ,Freeze(1),EWC(1e7|1e8)"`` on the commas outside parentheses.

    >>> split_methods("SEQ, Freeze(1),EWC(1e7|1e8)")
    ['SEQ', 'Freeze(1)', 'EWC(1e7|1e8)']
    """
    items, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    items.append(current.strip())
    return [item for item in items if item]


def parse_methods(text: str) -> tuple[MethodSpec, ...]:
    """The families of a ``--methods`` string, SEQ first (added when missing: it is every
    comparison's reference, and TaskVector edits its run).

    >>> [(s.family, [c.setting for c in s.candidates]) for s in parse_methods("Freeze(1|2),EWC(1e6)")]
    [('SEQ', ['']), ('Freeze', ['1', '2']), ('EWC', ['1e6'])]

    Raises:
        UsageError: an unknown family, a bad setting, or a family named twice.
    """
    specs: dict[str, MethodSpec] = {}
    for item in split_methods(text):
        match = _ITEM.match(item)
        if not match:
            raise UsageError(f"not a method: {item!r} (e.g. SEQ, Freeze(1), EWC(1e7|1e8), GP(20-50), TaskVector)")
        family = _canonical_family(match.group(1))
        if family in specs:
            raise UsageError(f"{family} is named twice in --methods")
        settings = (tuple(s.strip() for s in match.group(2).split("|")) if match.group(2) is not None
                    else DEFAULT_GRIDS[family])
        candidates = tuple(dict.fromkeys(make_candidate(family, s) for s in settings))
        specs[family] = MethodSpec(family, candidates)
    if not specs:
        raise UsageError("--methods names no method")
    seq = specs.pop("SEQ", MethodSpec("SEQ", (make_candidate("SEQ", ""),)))
    return (seq, *specs.values())
