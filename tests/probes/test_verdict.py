"""``diagnose`` end to end on tiny inputs: every probe runs, missing inputs are skipped and said so."""

import copy
import json

import pytest
import torch

from spurious_diag.errors import MismatchError
from spurious_diag.probes import DiagnoseOptions, RecoverySettings, diagnose
from spurious_diag.report.diagnosis import diagnosis_content, diagnosis_markdown
from tests.probes.conftest import as_json

FAST = RecoverySettings(ns=(6,), steps=2)


def _damaged(model, seed=0, scale=0.05):
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.model.layers[0].parameters():
            p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return out


def test_every_probe_runs_and_the_report_serializes(bio_base):
    base, tokenizer, scenario = bio_base
    people = scenario.people_in("task0_test")[:10]
    ids = {p.person_id for p in people}
    old = [r for r in as_json(scenario.qa("task0_test")) if r["person_id"] in ids]
    bios = [r for r in as_json(scenario.probes("task0_test")) if r["person_id"] in ids]
    new = as_json(scenario.qa("task1")[:12])
    d = diagnose(base, _damaged(base), old, base=_damaged(base, seed=1), tokenizer=tokenizer, new_task_records=new,
                 pretraining_records=bios, options=DiagnoseOptions(recovery=FAST, max_candidates=5, seed=0))
    # The base never learned QA: nothing to forget, so no verdict either way.
    assert d.verdict == "inconclusive" and "no forgetting" in d.reason
    assert set(d.frames) == {"accuracy", "recovery", "format", "format_overall", "linear_probe", "grafting",
                             "residual_shift", "geometry"}
    assert d.settings["split"] == {"by": "person_id", "held_out_records": 30, "recovery_pool_records": 30}
    assert set(d.frames["accuracy"]["model"]) == {"before", "after", "base"}
    assert set(d.frames["accuracy"]["task"]) == {"old", "new"}
    assert d.skipped == {}
    assert d.recommendation.k is not None
    # Each probe that ran has its wall time (and the accuracy table that every probe reads).
    assert set(d.settings["seconds"]) == {"accuracy", "recovery", "format", "linear", "grafting", "shift", "geometry"}
    assert all(t >= 0 for t in d.settings["seconds"].values())
    assert set(d.frames["grafting"]["arm"]) == {"bottom", "top", "embeddings"}
    summary = json.loads(json.dumps(diagnosis_content(d, include_frames=True), allow_nan=False))
    assert summary["verdict"] == "inconclusive" and summary["rules"][0]["name"] == "forgetting"
    assert "grafting" in summary["frames"]
    text = diagnosis_markdown(d)
    assert "## Verdict: **inconclusive**" in text and "## Grafting" in text
    assert "Wall time per probe: accuracy" in text


def test_grafting_without_its_top_arm_scores_the_same_bottom_grafts(bio_base):
    base, tokenizer, scenario = bio_base
    old = as_json(scenario.qa("task0_test")[:24])
    after = _damaged(base)

    def grafts(top):
        d = diagnose(base, after, old, tokenizer=tokenizer,
                     options=DiagnoseOptions(probes=("grafting",), graft_ks=(0, 1, 2), graft_top=top))
        return d.frames["grafting"].set_index(["arm", "k"]), d

    both, _ = grafts(True)
    bottom_only, d = grafts(False)
    assert set(both.index.get_level_values("arm")) == {"bottom", "top", "embeddings"}
    assert set(bottom_only.index.get_level_values("arm")) == {"bottom", "embeddings"}
    shared = bottom_only.index
    assert both.loc[shared, "old_acc"].tolist() == bottom_only["old_acc"].tolist()
    assert d.settings["graft_top"] is False and "graft_bottom_minus_top" not in d.evidence


def test_the_format_probe_without_ranking_scores_the_same_exact_match(bio_base):
    base, tokenizer, scenario = bio_base
    people = {p.person_id for p in scenario.people_in("task0_test")[:6]}
    old = [r for r in as_json(scenario.qa("task0_test")) if r["person_id"] in people]
    bios = [r for r in as_json(scenario.probes("task0_test")) if r["person_id"] in people]
    after = _damaged(base)

    def fmt(rank):
        return diagnose(base, after, old, tokenizer=tokenizer, pretraining_records=bios,
                        options=DiagnoseOptions(probes=("format",), max_candidates=3, format_rank=rank))

    ranked, plain = fmt(True), fmt(False)
    assert "top1" in ranked.frames["format_overall"] and "top1" not in plain.frames["format_overall"]
    columns = ["model", "format", "n", "exact_match", "first_token_acc"]
    assert ranked.frames["format_overall"][columns].equals(plain.frames["format_overall"][columns])
    assert "pretraining_format_top1_after" in ranked.evidence and not any("top1" in k for k in plain.evidence)
    assert plain.verdict == ranked.verdict and plain.settings["format_rank"] is False


def test_checkpoints_alone_give_a_geometry_recommendation_marked_weaker(bio_base):
    base, tokenizer, _ = bio_base
    summary = {"per_layer": {str(i): {"rms_mean": {"1": 0.1, "2": r}, "angle_mean_deg": {"1-2": a}}
                             for i, (r, a) in enumerate([(0.3, 89), (0.2, 80), (0.1, 5), (0.1, 3)])}}
    d = diagnose(base, _damaged(base), None, tokenizer=tokenizer, audit_result=summary)
    assert d.verdict == "inconclusive" and "needs old-task records" in d.reason
    assert d.recommendation.k == 2 and d.recommendation.strength == "weaker"
    assert d.skipped == {p: "no old-task records" for p in ("recovery", "format", "linear", "grafting", "shift")}
    assert "weaker" in diagnosis_markdown(d)


def test_missing_inputs_are_skipped_with_reasons(bio_base):
    base, tokenizer, scenario = bio_base
    old = as_json(scenario.qa("task0_test")[:24])
    d = diagnose(base, _damaged(base), old, tokenizer=tokenizer,
                 options=DiagnoseOptions(recovery=FAST, probes=("recovery", "format", "geometry"), compute_audit=True))
    assert d.skipped["format"] == "no pretraining-format records"
    assert "control" in d.skipped["recovery control"]
    assert d.skipped["linear"] == "not requested" and d.skipped["grafting"] == "not requested"
    assert "sizes only" in d.skipped["geometry angles"]
    assert set(d.frames) == {"accuracy", "recovery", "geometry"}
    assert d.recommendation.source == "geometry"


def test_models_of_different_depth_are_refused_before_any_probe(bio_base, tiny_llama):
    base, tokenizer, scenario = bio_base
    old = as_json(scenario.qa("task0_test")[:12])
    with pytest.raises(MismatchError, match="num_hidden_layers is 2 here but 4 in before"):
        diagnose(base, tiny_llama(num_layers=2), old, tokenizer=tokenizer, options=DiagnoseOptions(recovery=FAST))
