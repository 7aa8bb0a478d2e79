"""The feature view: shift numbers against hand values, the PCA against scikit-learn, and the frames
tied to the hidden states of tiny random Biography Llamas."""

import copy
import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from spurious_diag.errors import MismatchError, UsageError
from spurious_diag.probes.feature_view import (
    FEATURE_POINT_COLUMNS,
    FEATURE_SUMMARY_COLUMNS,
    feature_shift,
    feature_view,
    pca_projection,
)
from spurious_diag.probes.hidden import last_prompt_hidden_states
from tests.probes.conftest import as_json


def _planted(angle_deg: float):
    """A cloud along e1 (spread ±2, with ±0.1 along e2, uncorrelated) around (1, 2, 2), and the
    same cloud rotated by ``angle_deg`` in the e1-e2 plane around a mean moved by (3, 0, 4)."""
    t = torch.tensor([-2.0, -1.0, 1.0, 2.0], dtype=torch.float64)
    s = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64) * 0.1  # Σ t·s = 0
    shape = torch.stack([t, s, torch.zeros(4, dtype=torch.float64)], dim=1)  # 4×3, PC1 = e1
    c, sn = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    rot = torch.tensor([[c, -sn, 0.0], [sn, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    mu = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)  # ‖μ‖ = 3
    return mu + shape, mu + torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64) + shape @ rot.T


def test_feature_shift_on_planted_clouds():
    before, after = _planted(30.0)
    shift = feature_shift(before, after)
    assert shift["mean_shift"] == pytest.approx(5.0, abs=1e-12)
    assert shift["mean_shift_rel"] == pytest.approx(5.0 / 3.0, abs=1e-12)
    assert shift["pc_angle_deg"] == pytest.approx(30.0, abs=1e-9)
    assert feature_shift(before, before) == {"mean_shift": 0.0, "mean_shift_rel": 0.0, "pc_angle_deg": 0.0}
    assert feature_shift(*_planted(120.0))["pc_angle_deg"] == pytest.approx(60.0, abs=1e-9)  # sign-aligned
    assert math.isnan(feature_shift(before[:1], after[:1])["pc_angle_deg"])  # one input: no direction
    with pytest.raises(MismatchError, match="same N×D"):
        feature_shift(before, after[:3])


def test_pca_projection_matches_sklearn_fitted_on_the_before_cloud():
    gen = torch.Generator().manual_seed(0)
    before = torch.randn(40, 6, generator=gen, dtype=torch.float64) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1],
                                                                                    dtype=torch.float64)
    after = before @ torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))[0] + 2.0
    proj_b, proj_a = pca_projection(before, after, k=2)
    pca = PCA(n_components=2, svd_solver="full").fit(before.numpy())
    want_b, want_a = pca.transform(before.numpy()), pca.transform(after.numpy())
    signs = np.sign((proj_b.numpy() * want_b).sum(axis=0))  # sklearn's sign convention may differ
    np.testing.assert_allclose(proj_b.numpy(), want_b * signs, atol=1e-10)
    np.testing.assert_allclose(proj_a.numpy(), want_a * signs, atol=1e-10)
    # our sign rule: each component's largest-|loading| entry is positive
    components = pca.components_ * np.sign(pca.components_[np.arange(2), np.abs(pca.components_).argmax(axis=1)])[:, None]
    np.testing.assert_allclose(proj_a.numpy(), (after.numpy() - pca.mean_) @ components.T, atol=1e-10)
    np.testing.assert_allclose(proj_b.mean(dim=0).numpy(), 0.0, atol=1e-12)
    assert proj_b.dtype == torch.float64 and proj_b.shape == (40, 2)


def test_pca_projection_leaves_undefined_components_nan():
    same = torch.ones(5, 4)
    proj_b, proj_a = pca_projection(same, same + 1)
    assert torch.isnan(proj_b).all() and torch.isnan(proj_a).all()
    two = torch.tensor([[0.0, 1.0, 0.0], [2.0, 1.0, 0.0]])  # one direction of variance
    proj_b, _ = pca_projection(two, two)
    assert proj_b[:, 0].tolist() == [-1.0, 1.0] and torch.isnan(proj_b[:, 1]).all()
    with pytest.raises(UsageError):
        pca_projection(two, two, k=0)


@pytest.fixture
def qa_records(scenario):
    return as_json(scenario.qa("task0_test")[:48])  # 8 people × 6 attributes


def test_identical_models_show_no_shift_and_frames_have_their_columns(make_tiny_llama, tokenizer, qa_records):
    model = make_tiny_llama(seed=0)
    view = feature_view(model, copy.deepcopy(model), tokenizer, qa_records, window="Task 0")
    summary, points = view.summary, view.points
    attributes = list(dict.fromkeys(r["attribute"] for r in qa_records))
    assert list(summary.columns) == FEATURE_SUMMARY_COLUMNS and list(points.columns) == FEATURE_POINT_COLUMNS
    assert len(summary) == len(attributes) * 3 and list(summary["layer"][:3]) == [0, 1, 2]  # 2 blocks: 3 states
    assert list(dict.fromkeys(summary["attribute"])) == attributes and set(summary["window"]) == {"Task 0"}
    assert (summary["n"] == 8).all()
    assert (summary["mean_shift"].abs() < 1e-9).all() and (summary["mean_shift_rel"].abs() < 1e-9).all()
    deeper = summary[summary["layer"] > 0]
    assert (deeper["pc_angle_deg"] < 1e-3).all()
    assert summary.loc[summary["layer"] == 0, "pc_angle_deg"].isna().all()  # every prompt ends with one token
    assert len(points) == 2 * len(qa_records) * 3 and set(points["which"]) == {"before", "after"}
    before = points[points["which"] == "before"].reset_index(drop=True)
    after = points[points["which"] == "after"].reset_index(drop=True)
    np.testing.assert_allclose(before[["pc1", "pc2"]].to_numpy(), after[["pc1", "pc2"]].to_numpy(), atol=1e-9)


def test_frames_equal_the_functions_applied_to_the_hidden_states(make_tiny_llama, tokenizer, qa_records):
    before_model, after_model = make_tiny_llama(seed=0), make_tiny_llama(seed=1)
    view = feature_view(before_model, after_model, tokenizer, qa_records, window="Task 1 early", layers=[1, 2])
    assert sorted(set(view.summary["layer"])) == [1, 2]
    prompts = [r["prompt"] for r in qa_records]
    hb = last_prompt_hidden_states(before_model, tokenizer, prompts)
    ha = last_prompt_hidden_states(after_model, tokenizer, prompts)
    idx = [i for i, r in enumerate(qa_records) if r["attribute"] == "major"]
    row = view.summary[(view.summary["attribute"] == "major") & (view.summary["layer"] == 2)].iloc[0]
    want = feature_shift(hb[2, idx], ha[2, idx])
    assert row["mean_shift"] > 0
    for key, value in want.items():
        assert row[key] == pytest.approx(value, rel=1e-12)
    pts = view.points[(view.points["attribute"] == "major") & (view.points["layer"] == 2)]
    proj_b, proj_a = pca_projection(hb[2, idx], ha[2, idx])
    for which, proj in (("before", proj_b), ("after", proj_a)):
        cloud = pts[pts["which"] == which]
        assert list(cloud["person_id"]) == [qa_records[i]["person_id"] for i in idx]
        np.testing.assert_allclose(cloud[["pc1", "pc2"]].to_numpy(), proj.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(UsageError, match="outside"):
        feature_view(before_model, after_model, tokenizer, qa_records, window="w", layers=[3])
