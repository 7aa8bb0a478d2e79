"""The diagnosis's report.md and summary.json, rendered from a Diagnosis built by hand."""

import json
import math

import pandas as pd

from spurious_diag.probes.diagnosis import Diagnosis
from spurious_diag.probes.recommend import recommend_freeze_depth
from spurious_diag.probes.rules import VerdictInputs, decide
from spurious_diag.report.diagnosis import diagnosis_content, diagnosis_markdown, write_diagnosis_report


def _diagnosis() -> Diagnosis:
    recovery = pd.DataFrame({"n": [0, 0, 50, 50], "model": ["forgot", "control"] * 2,
                             "acc_start": [0.1, 0.0, 0.1, 0.0], "acc": [0.1, 0.0, 0.7, 0.2],
                             "recovery_fraction": [0.0, -0.125, 0.75, 0.125], "steps": [0, 0, 40, 40],
                             "lr": [1e-4] * 4})
    inputs = VerdictInputs(acc_before=0.9, acc_after=0.1, recovery=recovery, pretraining_before=0.95,
                           pretraining_after=0.9)
    verdict, rules, reason = decide(inputs)
    grafting = pd.DataFrame({"arm": ["bottom"] * 3, "k": [0, 1, 2], "old_acc": [0.1, 0.7, 0.8], "status": "ok"})
    recommendation = recommend_freeze_depth(2, grafting=grafting, acc_before=0.9, acc_after=0.1)
    return Diagnosis(verdict, reason, rules, {"acc_before": 0.9, "acc_after": 0.1, "shift_min_cka": math.nan},
                     {"recovery": recovery, "grafting": grafting}, recommendation,
                     {"format": "no pretraining-format records"},
                     {"inputs": {"before": "task0", "after": "task1", "base": None}, "seed": 0})


def test_markdown_gives_verdict_rules_recommendation_evidence_and_tables():
    d = _diagnosis()
    text = diagnosis_markdown(d)
    assert d.verdict == "spurious" and "## Verdict: **spurious**" in text
    assert all(f"| `{r.name}` |" in text for r in d.rules)
    assert d.recommendation.k == 1 and "**Freeze(1)**: the embeddings + block 0" in text
    assert "| shift_min_cka | – |" in text  # NaN shown as a dash
    assert "- format: no pretraining-format records" in text
    assert "## Recovery" in text and "## Grafting" in text and "`grafting.csv`, `recovery.csv`" in text


def test_summary_json_is_the_content_with_a_header(tmp_path):
    d = _diagnosis()
    written = write_diagnosis_report(d, str(tmp_path), {"before_path": "/models/task0"})
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == ["grafting.csv", "recovery.csv", "report.md",
                                                              "summary.json"]
    raw = (tmp_path / "summary.json").read_text()
    summary = json.loads(raw)
    assert "NaN" not in raw and summary["evidence"]["shift_min_cka"] is None
    assert summary["kind"] == "diagnosis" and summary["verdict"] == "spurious"
    assert summary["settings"]["inputs"] == {"before": "task0", "after": "task1", "base": None,
                                             "before_path": "/models/task0"}
    assert d.settings["inputs"] == {"before": "task0", "after": "task1", "base": None}  # the result is not changed
    content = diagnosis_content(d, include_frames=True)
    assert content["frames"]["recovery"][2]["recovery_fraction"] == 0.75
    assert content["rules_fired"] == d.rules_fired
