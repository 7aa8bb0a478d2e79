"""The audit's report.md and summary.json: what a 2- and a 3-checkpoint audit say."""

import json

import pytest
import torch

from spurious_diag import AuditOptions, audit
from spurious_diag.report.audit import audit_markdown, write_audit_report


@pytest.fixture(scope="module")
def states():
    from tests.conftest import tiny_model

    s0 = {k: v.detach().double() for k, v in tiny_model("llama").state_dict().items()}
    g = torch.Generator().manual_seed(0)
    s1 = {k: v + 1e-2 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in s0.items()}
    s2 = {k: v + 1e-2 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in s1.items()}
    return s0, s1, s2


def test_two_checkpoints_say_there_are_no_angles_and_how_to_get_them(states):
    text = audit_markdown(audit(states[:2], AuditOptions(rank=4), progress=False).summary)
    assert "Updates: u1 = CKPT_1 − CKPT_0." in text
    assert "`rms uN`" in text and "| layer | rms u1 |" in text
    assert "no angles" in text and "three checkpoints" in text and "--base" in text
    assert "angle 1-2" not in text and "consecutive updates" not in text


def test_three_checkpoints_report_angles_between_consecutive_updates(states):
    result = audit(states, AuditOptions(rank=4), progress=False)
    text = audit_markdown(result.summary)
    assert "u2 = CKPT_2 − CKPT_1" in text and "| layer | rms u1 | rms u2 | angle 1-2 | overlap 1-2 |" in text
    assert "no angles" not in text
    table = [line for line in text.splitlines() if line.startswith("| block 0 |")]
    assert len(table) == 1 and len(table[0].split("|")) == 7


def test_summary_json_has_the_header_and_no_nan(states, tmp_path):
    result = audit(states, AuditOptions(rank=4), progress=False)
    result.summary["per_layer"]["0"]["rms_mean"]["1"] = float("nan")  # a mean over no tensor
    write_audit_report(result, str(tmp_path))
    raw = (tmp_path / "summary.json").read_text()
    summary = json.loads(raw)
    assert "NaN" not in raw and summary["per_layer"]["0"]["rms_mean"]["1"] is None
    assert list(summary)[:3] == ["schema_version", "package", "kind"] and summary["kind"] == "audit"
    assert summary["counts"] == result.summary["counts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv", "report.md", "summary.json", "updates.csv"]
