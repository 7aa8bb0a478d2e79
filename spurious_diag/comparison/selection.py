"""Choosing a method's free setting on the Task 0 validation people (pure pandas).

Every family's setting is chosen the same way, on the selection seed's runs: among the settings
whose last task at its early-stop point is within ``tolerance`` of SEQ's (same seed), the one that
keeps the most Task 0 *validation* exact match at that point (the first listed wins ties,
:func:`~spurious_diag.ties.first_best`). When no setting is eligible, the
one whose last task comes closest is taken, and the choice says so. The held-out Task 0 test
people never enter a choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..errors import UsageError
from ..ties import first_best

__all__ = ["Choice", "choose_setting"]


@dataclass(frozen=True)
class Choice:
    """A family's chosen setting.

    Attributes:
        setting: the chosen candidate's ``setting``.
        eligible: the candidates that met the Task 1 bound.
        reason: one line: how it was chosen.
    """

    setting: str
    eligible: tuple[str, ...]
    reason: str


def choose_setting(candidates: pd.DataFrame, seq_task1_stop: float, tolerance: float) -> Choice:
    """Choose among one family's candidates (module docstring).

    Args:
        candidates: one row per setting with ``setting``, ``task0_val_stop`` and ``task1_stop``
            (fractions) on the selection seed.
        seq_task1_stop: SEQ's ``task1_stop`` on the same seed.
        tolerance: how far below SEQ's a candidate's ``task1_stop`` may be.

    >>> table = pd.DataFrame({"setting": ["a", "b", "c"], "task0_val_stop": [0.5, 0.7, 0.9],
    ...                       "task1_stop": [0.9, 0.85, 0.5]})
    >>> choose_setting(table, 0.92, 0.10).setting
    'b'

    Raises:
        UsageError: no candidates, or a missing column.
    """
    missing = {"setting", "task0_val_stop", "task1_stop"} - set(candidates.columns)
    if missing:
        raise UsageError(f"candidates lack columns {sorted(missing)}")
    if candidates.empty:
        raise UsageError("no candidates to choose from")
    if len(candidates) == 1:
        only = str(candidates["setting"].iloc[0])
        eligible = candidates["task1_stop"].iloc[0] >= seq_task1_stop - tolerance
        return Choice(only, (only,) if eligible else (), "the only setting given")
    bound = seq_task1_stop - tolerance
    eligible = candidates[candidates["task1_stop"] >= bound - 1e-12]
    if not eligible.empty:
        best = eligible.iloc[first_best(eligible["task0_val_stop"].tolist())]
        reason = (f"most Task 0 validation exact match at early stop ({best['task0_val_stop']:.3f}) among the "
                  f"{len(eligible)} of {len(candidates)} settings whose last task at early stop is >= {bound:.3f} "
                  f"(SEQ's {seq_task1_stop:.3f} - {tolerance:g})")
    else:
        best = candidates.iloc[first_best(candidates["task1_stop"].tolist())]
        reason = (f"no setting's last task reached {bound:.3f} at early stop (SEQ's {seq_task1_stop:.3f} - "
                  f"{tolerance:g}); took the closest ({best['task1_stop']:.3f})")
    return Choice(str(best["setting"]), tuple(str(s) for s in eligible["setting"]), reason)
