
import pandas as pd

from spurious_diag.probes.grafting import GRAFT_COLUMNS
from spurious_diag.probes.recommend import depth_from_geometry, depth_from_grafting, recommend_freeze_depth


def _grafting(bottom, top=None, embeddings=None):
    rows = []
    for k, acc in enumerate(bottom):
        rows.append({"arm": "bottom", "k": k, "old_acc": acc, "status": "ok"})
    for k, acc in enumerate(top or [], start=1):
        rows.append({"arm": "top", "k": k, "old_acc": acc, "status": "ok"})
    if embeddings is not None:
        rows.append({"arm": "embeddings", "k": 0, "old_acc": embeddings, "status": "ok"})
    return pd.DataFrame(rows).reindex(columns=GRAFT_COLUMNS)


def _summary(rms_last, angles=None):
    """An audit summary with two updates: '1' (Task 0) and '2' (Task 1), pair '1-2'."""
    per_layer = {}
    for layer, rms in enumerate(rms_last):
        entry = {"rms_mean": {"1": 0.01, "2": rms}, "rel_mean": {}, "angle_mean_deg": {}, "overlap": {}}
        if angles is not None:
            entry["angle_mean_deg"]["1-2"] = angles[layer]
        per_layer[str(layer)] = entry
    per_layer["-1"] = {"rms_mean": {"1": 0.01, "2": 0.5}, "rel_mean": {}, "angle_mean_deg": {}, "overlap": {}}
    return {"per_layer": per_layer}


def test_smallest_bottom_graft_that_restores_most():
    frame = _grafting([0.1, 0.3, 0.6, 0.8, 0.9], top=[0.1, 0.1, 0.2, 0.9], embeddings=0.2)
    k, sentence = depth_from_grafting(frame, 0.9, 0.1, 4)  # r = 0.25, 0.625, ...
    assert k == 2 and "k=2: 62%" in sentence
    assert depth_from_grafting(frame, 0.9, 0.1, 4, restore=0.2)[0] == 1
    assert depth_from_grafting(_grafting([0.1, 0.1], embeddings=0.8), 0.9, 0.1, 1)[0] == 0  # embeddings suffice
    k, sentence = depth_from_grafting(_grafting([0.1, 0.1, 0.2, 0.3, 0.9]), 0.9, 0.1, 4)
    assert k is None and "whole stack" in sentence
    assert depth_from_grafting(_grafting([0.5, 0.5]), 0.5, 0.5, 1)[0] is None  # nothing forgotten


def test_geometry_counts_large_orthogonal_blocks_from_the_bottom():
    k, sentence, table = depth_from_geometry(_summary([0.04, 0.03, 0.01, 0.01], [89, 88, 10, 5]), 4)
    assert k == 2 and list(table["flagged"]) == [True, True, False, False]
    k, _, _ = depth_from_geometry(_summary([0.01, 0.04, 0.04, 0.01], [10, 89, 88, 5]), 4)
    assert k == 0  # block 0 not flagged: Freeze(0), the embeddings only
    k, sentence, _ = depth_from_geometry(_summary([0.05] * 8), 8)  # sizes only, all equal: capped at L/2
    assert k == 4 and "sizes only" in sentence and "capped" in sentence


def test_recommendation_prefers_grafting_and_says_when_evidence_is_weaker():
    grafting = _grafting([0.1, 0.7, 0.8, 0.85, 0.9])
    summary = _summary([0.04, 0.03, 0.01, 0.01], [89, 88, 10, 5])
    both = recommend_freeze_depth(4, grafting=grafting, acc_before=0.9, acc_after=0.1, audit_summary=summary)
    assert (both.k, both.source, both.strength, both.k_grafting, both.k_geometry) == (1, "grafting", "stronger", 1, 2)
    geometry_only = recommend_freeze_depth(4, audit_summary=summary)
    assert (geometry_only.k, geometry_only.strength) == (2, "weaker") and "weaker" in geometry_only.reasoning
    nothing = recommend_freeze_depth(4)
    assert nothing.k is None and nothing.source == "none"


def test_geometry_fallback_says_whether_grafting_ran():
    summary = _summary([0.04, 0.03, 0.01, 0.01], [89, 88, 10, 5])
    whole_stack = _grafting([0.1, 0.1, 0.2, 0.3, 0.9])  # only k = L restores: no bottom depth
    ran = recommend_freeze_depth(4, grafting=whole_stack, acc_before=0.9, acc_after=0.1, audit_summary=summary)
    assert (ran.k, ran.source) == (2, "geometry") and "Grafting supports no bottom depth" in ran.reasoning
    assert "Without a grafting result" in recommend_freeze_depth(4, audit_summary=summary).reasoning
