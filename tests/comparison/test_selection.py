"""Choosing a free setting on the validation people: the rule against hand-worked tables."""

from __future__ import annotations

import pandas as pd
import pytest

from spurious_diag.comparison.selection import choose_setting
from spurious_diag.errors import UsageError


def _table(rows):
    return pd.DataFrame(rows, columns=["setting", "task0_val_stop", "task1_stop"])


def test_the_most_task0_among_settings_within_the_tolerance_of_seq():
    table = _table([("1e7", 0.20, 0.93), ("1e8", 0.31, 0.85), ("1e9", 0.60, 0.40)])
    choice = choose_setting(table, seq_task1_stop=0.92, tolerance=0.10)
    assert choice.setting == "1e8"  # 1e9 keeps more Task 0 but its Task 1 is 52 points below SEQ's
    assert choice.eligible == ("1e7", "1e8")


def test_the_bound_is_inclusive():
    choice = choose_setting(_table([("a", 0.1, 0.82), ("b", 0.5, 0.80)]), seq_task1_stop=0.90, tolerance=0.10)
    assert choice.setting == "b"


def test_without_an_eligible_setting_the_closest_to_the_bound_is_taken_and_said():
    choice = choose_setting(_table([("a", 0.9, 0.30), ("b", 0.1, 0.60)]), seq_task1_stop=0.95, tolerance=0.10)
    assert choice.setting == "b" and choice.eligible == () and "no setting" in choice.reason


def test_a_single_setting_is_taken_as_given():
    choice = choose_setting(_table([("0.1", 0.2, 0.1)]), seq_task1_stop=0.9, tolerance=0.1)
    assert choice.setting == "0.1" and choice.eligible == ()


def test_bad_tables_are_refused():
    with pytest.raises(UsageError, match="lack columns"):
        choose_setting(pd.DataFrame({"setting": ["a"]}), 0.9, 0.1)
    with pytest.raises(UsageError, match="no candidates"):
        choose_setting(_table([]), 0.9, 0.1)


def test_a_tie_within_float_noise_goes_to_the_first_listed_setting():
    """46/240 as a mean over attributes can come out as ...665 or ...668: that is a tie, not a choice."""
    table = _table([("1", 0.19166666666666665, 0.9), ("6", 0.19166666666666668, 0.9), ("15", 0.1, 0.9)])
    assert choose_setting(table, 0.9, 0.1).setting == "1"
    table = _table([("1", 0.19, 0.9), ("6", 0.2, 0.9)])
    assert choose_setting(table, 0.9, 0.1).setting == "6"
