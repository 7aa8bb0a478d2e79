"""The result of a diagnosis: :class:`Diagnosis` (the verdict, the rules, the evidence and the tables).

Rendering it (``summary.json``, ``report.md``) is :mod:`spurious_diag.report.diagnosis`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .recommend import FreezeRecommendation
from .rules import RuleOutcome

__all__ = ["Diagnosis"]


@dataclass
class Diagnosis:
    """The verdict and everything behind it.

    Attributes:
        verdict: ``spurious``, ``real`` or ``inconclusive``.
        reason: one sentence.
        rules: every rule's :class:`~.rules.RuleOutcome` (fired, not fired, not applicable).
        evidence: the headline numbers (flat name → float / int / None).
        frames: per-probe tidy tables: ``accuracy``, ``recovery``, ``format``, ``format_overall``,
            ``linear_probe``, ``grafting``, ``residual_shift``, ``geometry`` (those that ran).
        recommendation: the freeze depth and its reasoning.
        skipped: probe → why it did not run.
        settings: the options, the split, the inputs and each probe's wall time (``seconds``).
    """

    verdict: str
    reason: str
    rules: list[RuleOutcome]
    evidence: dict[str, Any]
    frames: dict[str, pd.DataFrame] = field(repr=False)
    recommendation: FreezeRecommendation
    skipped: dict[str, str]
    settings: dict[str, Any]

    @property
    def rules_fired(self) -> list[str]:
        """Names of the rules that fired."""
        return [r.name for r in self.rules if r.fired]
