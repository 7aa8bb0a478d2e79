"""Parsing ``--methods``: families, their settings, and the alternatives chosen on validation."""

from __future__ import annotations

import pytest

from spurious_diag.comparison.spec import DEFAULT_GRIDS, make_candidate, parse_methods, split_methods
from spurious_diag.errors import UsageError


def test_the_issue_example_parses_with_seq_first_and_bare_names_on_their_grids():
    specs = parse_methods("Freeze,REPLAY(0.1),EWC(1e6),TaskVector,LAMOL(0.25),GP,SEQ")
    assert [s.family for s in specs] == ["SEQ", "Freeze", "REPLAY", "EWC", "TaskVector", "LAMOL", "GP"]
    by = {s.family: s for s in specs}
    assert [c.setting for c in by["Freeze"].candidates] == list(DEFAULT_GRIDS["Freeze"])
    assert by["Freeze"].chosen_on_validation and not by["REPLAY"].chosen_on_validation
    assert by["EWC"].candidates[0].method.label == "EWC(1e6)"
    assert [c.alpha for c in by["TaskVector"].candidates] == [0.05, 0.1, 0.15, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert not by["TaskVector"].candidates[0].trains and by["GP"].candidates[0].trains


def test_seq_is_added_when_missing_and_alternatives_keep_their_order():
    specs = parse_methods("ewc(1e8|1e7)")
    assert [s.family for s in specs] == ["SEQ", "EWC"]
    assert [c.method.param for c in specs[1].candidates] == [1e8, 1e7]


def test_gp_settings_carry_the_window_and_rule():
    gp = make_candidate("GP", "20-50:official")
    assert (gp.projection.early, gp.projection.late, gp.projection.rule) == (20, 50, "official")
    assert make_candidate("GP", "100-150").projection.rule == "exact"
    assert gp.label == "GP(20-50:official)" and gp.slug == "gp-20-50-official"


def test_every_candidate_of_the_defaults_has_its_own_file_name():
    slugs = [c.slug for s in parse_methods(",".join(DEFAULT_GRIDS)) for c in s.candidates]
    assert len(slugs) == len(set(slugs))
    assert all(s.replace("-", "").replace("+", "").isalnum() for s in slugs)


@pytest.mark.parametrize("text, words", [
    ("SEQ,Foo", "unknown method"), ("EWC(1e6),EWC(1e7)", "named twice"), ("GP(50)", "GP(EARLY-LATE)"),
    ("GP(50-20)", "early <= late"), ("TaskVector(0)", "alpha"), ("SEQ(1)", "no setting"), ("EWC(x)", "not a number"),
    ("Freeze(1.5)", "integer"), ("REPLAY(2)", "0 <= f <= 1"), ("", "names no method"), ("EWC(1e6", "not a method"),
])
def test_bad_methods_are_refused_with_the_reason(text, words):
    with pytest.raises(UsageError, match=None) as info:
        parse_methods(text)
    assert words in str(info.value)


def test_split_ignores_commas_inside_parentheses():
    assert split_methods("a(1,2), b ,c(3)") == ["a(1,2)", "b", "c(3)"]
