"""Known answer: the probes and the verdict tell lost alignment from overwritten facts.

Both models start from the same Task 0 model (the shipped base after 300 QA steps, ~0.87 on
held-out people). ``spurious``: 40 steps of Task 1 QA on new people (SEQ at the dip): QA on the
old people collapses, the biographies are intact. ``real``: the Task 0 people's facts rewritten
with wrong values in both formats. The fixture checks that each model is what it claims to be (training
further, within a bound, where a CPU needs more steps). Slow: it trains ~400 steps (~60 s on one thread).
"""

import pytest

from spurious_diag.probes import DiagnoseOptions, RecoverySettings, diagnose, format_probe
from spurious_diag.report.diagnosis import diagnosis_markdown
from tests.probes.conftest import as_json

pytestmark = pytest.mark.slow

RECOVERY = RecoverySettings(ns=(100,), steps=40, lr=1e-4)


def _inputs(scenario, n_people=80):
    ids = {p.person_id for p in scenario.people_in("task0_test")[:n_people]}
    keep = lambda records: [r for r in as_json(records) if r["person_id"] in ids]  # noqa: E731
    return {
        "old_task_records": keep(scenario.qa("task0_test")),
        "pretraining_records": keep(scenario.probes("task0_test")),
        "recovery_records": as_json(scenario.qa("task0_train")),
        "new_task_records": as_json(scenario.qa("task1")[:240]),
    }


@pytest.fixture(scope="module")
def diagnoses(forgetting_models):
    f = forgetting_models
    inputs = _inputs(f.scenario)
    options = DiagnoseOptions(recovery=RECOVERY, max_candidates=10, probes=("recovery", "format", "grafting", "geometry"))
    common = dict(base=f.base, tokenizer=f.tokenizer, options=options, **inputs)
    return {"spurious": diagnose(f.task0, f.spurious, **common), "real": diagnose(f.task0, f.real, **common)}


def test_format_probe_separates_lost_alignment_from_lost_facts(forgetting_models):
    f = forgetting_models
    inputs = _inputs(f.scenario, n_people=30)
    result = format_probe({"task0": f.task0, "spurious": f.spurious, "real": f.real}, f.tokenizer,
                          inputs["old_task_records"], inputs["pretraining_records"], max_candidates=10)
    acc = result.accuracy
    assert acc("task0", "task") > 0.7 and acc("task0", "pretraining") > 0.85
    assert acc("spurious", "task") < 0.3 and acc("spurious", "pretraining") > 0.8  # alignment lost, facts kept
    assert acc("real", "task") < 0.2 and acc("real", "pretraining") < 0.3  # facts gone in both formats
    assert acc("spurious", "pretraining", "top1") > 0.9
    assert acc("real", "pretraining", "top1") < 0.5


def test_recovery_beats_the_control_only_when_the_facts_are_still_there(diagnoses):
    spurious, real = diagnoses["spurious"].evidence, diagnoses["real"].evidence
    assert spurious["recovery_fraction"] - spurious["recovery_control_fraction"] > 0.3
    assert real["recovery_fraction"] - real["recovery_control_fraction"] < 0.1


def test_verdicts(diagnoses):
    spurious, real = diagnoses["spurious"], diagnoses["real"]
    assert spurious.verdict == "spurious", diagnosis_markdown(spurious)
    assert set(spurious.rules_fired) == {"forgetting", "recovery_beats_control", "pretraining_intact"}
    assert real.verdict == "real", diagnosis_markdown(real)
    assert set(real.rules_fired) == {"forgetting", "recovery_like_control", "pretraining_collapsed"}


def test_bottom_grafts_beat_top_grafts_and_set_the_freeze_depth(diagnoses):
    d = diagnoses["spurious"]
    graft = d.frames["grafting"].set_index(["arm", "k"])["old_acc"]
    for k in (1, 2, 3):
        assert graft[("bottom", k)] > graft[("top", k)] + 0.2
    assert d.evidence["graft_bottom_minus_top"] > 0.2
    assert d.recommendation.source == "grafting" and d.recommendation.k in (1, 2)
