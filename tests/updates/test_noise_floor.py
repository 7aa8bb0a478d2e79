"""The noise floor of stored updates: planted rank-8 pairs in bf16 / fp16 / fp32, B1, B2, and the old numbers."""

import math

import numpy as np
import pytest
import torch

from spurious_diag import AuditOptions, audit
from spurious_diag.geometry.noise import factored_noise, noise_edge, rounding_noise_sq, rounding_variance, ulp
from spurious_diag.updates.options import MIN_SNR
from tests.updates.planted import (PAIR_ANGLES, PAIR_NAME as NAME, b1_chain, planted_pair, stored_pair_chain,
                                   synthetic_weight, write_lora_adapter)

ANGLES = PAIR_ANGLES.numpy()


def stored_pair_audit(w0, rel, dtype, angles_deg=ANGLES, **options):
    """Audit base → A and base → B (``--base``), every checkpoint stored in ``dtype``."""
    return audit(stored_pair_chain(w0, rel, dtype, torch.as_tensor(angles_deg)),
                 AuditOptions(rank=16, base=True, **options), progress=False)


@pytest.mark.parametrize("shape", [(576, 576), (1536, 576)], ids=["576x576", "1536x576"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
def test_planted_rank8_pairs_above_and_below_the_floor(shape, dtype):
    w0 = synthetic_weight(*shape)
    seen = set()
    for rel in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4):
        result = stored_pair_audit(w0, rel, dtype)
        updates, pair = result.updates, result.pairs.iloc[0]
        snr = float(updates["snr"].min())
        if snr >= MIN_SNR:
            seen.add("above")
            assert list(updates["rank"]) == [8, 8] and (updates["status"] == "ok").all(), (rel, snr)
            assert pair["status"] == "ok"
            assert abs(pair["angle_mean_deg"] - ANGLES.mean()) <= 2.0, (rel, snr, pair["angle_mean_deg"])
            assert abs(pair["angle_min_deg"] - ANGLES.min()) <= 2.0, (rel, snr, pair["angle_min_deg"])
        else:
            seen.add("below")
            assert updates["status"].str.startswith("below noise floor").all(), (rel, snr)
            assert updates["rank"].isna().all()
            assert pair["status"].startswith("below noise floor") and math.isnan(pair["angle_mean_deg"])
            assert math.isnan(pair["angle_min_deg"]) and math.isnan(pair["overlap"])
    assert "above" in seen and ("below" in seen or dtype == torch.float32)


def test_the_noise_model_matches_the_rounding_it_describes():
    """noise_fro is within the model's stated bias of the true rounding error: the base is stored
    exactly here, so counting its rounding too puts the estimate at √2× the truth for sizable updates."""
    w0 = synthetic_weight(576, 576)
    d_a, _ = planted_pair(w0, 1e-1, ANGLES)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        base = w0.to(dtype)
        a = (base.double() + d_a).to(dtype)
        actual = float((a.double() - base.double() - d_a).norm())
        estimated = float(audit([{NAME: base}, {NAME: a}], progress=False).updates["noise_fro"].iloc[0])
        assert math.sqrt(2) * 0.95 <= estimated / actual <= math.sqrt(2) * 1.05, (dtype, estimated / actual)


def test_a_shared_subspace_in_bf16_is_no_longer_called_far_apart():
    """Two tasks whose updates share their subspace (true angle 0°), bf16, ‖ΔW‖/‖W‖ = 1e-3."""
    w0 = synthetic_weight(576, 576)
    old = stored_pair_audit(w0, 1e-3, torch.bfloat16, angles_deg=np.zeros(8), noise_floor=False).pairs.iloc[0]
    new = stored_pair_audit(w0, 1e-3, torch.bfloat16, angles_deg=np.zeros(8)).pairs.iloc[0]
    # without the floor: rank 16, most of it rounding noise, so "far apart" (measured: ~40° mean)
    assert old["rank_a"] == 16 and old["angle_mean_deg"] > 30
    # with it: the rows say the signal cannot be told from rounding, and give no angle
    assert new["status"].startswith("below noise floor") and math.isnan(new["angle_mean_deg"])


@pytest.mark.parametrize("working", ["float64", "float32"])
def test_b1_float32_storage_noise_is_not_counted_as_signal(working):
    """A planted rank-4 update on 64×64 float32 checkpoints, small next to the weights (rel 1e-4): the
    working dtype's own cut kept float32 storage noise (rank 16, overlap 0.42); the floor does not."""
    chain = b1_chain()
    old = audit(chain, AuditOptions(rank=16, dtype=working, noise_floor=False), progress=False)
    new = audit(chain, AuditOptions(rank=16, dtype=working), progress=False)
    assert old.pairs.iloc[0]["rank_a"] > 4 and old.pairs.iloc[0]["overlap"] < 0.9  # the bug, as it was
    assert list(new.updates["rank"]) == [4, 4] and new.pairs.iloc[0]["overlap"] == pytest.approx(1.0, abs=1e-6)
    assert new.pairs.iloc[0]["angle_mean_deg"] < 0.01


def test_b2_a_tensor_the_adapter_leaves_alone_is_a_zero_update(tmp_path, make_model):
    model = make_model("llama")
    base = tmp_path / "base"
    model.save_pretrained(base)
    g = torch.Generator().manual_seed(0)
    q_name = "model.layers.0.self_attn.q_proj.weight"
    adapter = write_lora_adapter(tmp_path / "adapter", {q_name: (torch.randn(32, 4, generator=g).bfloat16(),
                                                                 torch.randn(4, 32, generator=g).bfloat16())},
                                 alpha=8, r=4)
    second = write_lora_adapter(tmp_path / "adapter2", {q_name: (torch.randn(32, 4, generator=g).bfloat16(),
                                                                 torch.randn(4, 32, generator=g).bfloat16())},
                                alpha=8, r=4)
    result = audit([str(base), str(adapter), str(second)], AuditOptions(rank=8), progress=False)
    untouched = result.updates[result.updates["name"] == "model.layers.0.self_attn.v_proj.weight"]
    assert list(untouched["rank"]) == [0, 0] and (untouched["fro"] == 0).all()
    pair = result.pairs[result.pairs["name"] == "model.layers.0.self_attn.v_proj.weight"].iloc[0]
    assert pair["status"] == "zero update: no subspace" and pair["rank_a"] == 0
    touched = result.updates[result.updates["name"] == q_name]
    assert list(touched["rank"]) == [4, 4] and (touched["noise_fro"] > 0).all() and (touched["snr"] > 100).all()


def test_ulp_and_variances_against_the_definition():
    values = torch.tensor([0.0, 1e-45, 0.75, 1.0, -3.0, 1000.0], dtype=torch.float64).float()
    for dtype, p in ((torch.bfloat16, 7), (torch.float16, 10), (torch.float32, 23)):
        stored = values.to(dtype)
        spacing = ulp(stored, dtype)
        for x, s in zip(stored.double().tolist(), spacing.tolist()):
            if abs(x) >= torch.finfo(dtype).tiny:
                assert s == 2.0 ** (math.floor(math.log2(abs(x))) - p)
                assert float(torch.tensor(x, dtype=torch.float64).to(dtype)) + s != x  # the next number is s away
        assert rounding_noise_sq(stored, dtype) == pytest.approx(float(rounding_variance(stored, dtype).sum()), rel=1e-6)


def test_edges_bound_the_noise_they_describe():
    g = torch.Generator().manual_seed(0)
    w = synthetic_weight(384, 256).to(torch.bfloat16)
    v = rounding_variance(w, torch.bfloat16)
    noise = torch.randn(w.shape, generator=g, dtype=torch.float64) * v.sqrt()
    edge = noise_edge(float(v.sum(1).max()), float(v.sum(0).max()))
    assert float(torch.linalg.matrix_norm(noise, ord=2)) <= edge
    B, A = torch.randn(384, 4, generator=g).bfloat16(), torch.randn(4, 256, generator=g).bfloat16()
    exact_b, exact_a = B.double() + (torch.rand(B.shape, generator=g, dtype=torch.float64) - 0.5) * ulp(B, torch.bfloat16), \
        A.double() + (torch.rand(A.shape, generator=g, dtype=torch.float64) - 0.5) * ulp(A, torch.bfloat16)
    fro, bound = factored_noise(B, A, 2.0, torch.bfloat16, torch.bfloat16)
    error = 2.0 * (B.double() @ A.double() - exact_b @ exact_a)
    assert 0.8 <= float(error.norm()) / fro <= 1.2 and float(torch.linalg.matrix_norm(error, ord=2)) <= bound


def test_summary_counts_rows_below_the_floor_and_warns_where_conclusions_rest_on_them():
    """Layer 0's q_proj gets a large planted update, layer 1's a tiny one (bf16): layer 1 is left with nothing."""
    w0 = synthetic_weight(576, 576)
    big_a, big_b = planted_pair(w0, 3e-2, ANGLES)
    tiny_a, tiny_b = planted_pair(w0, 1e-4, ANGLES, seed=2)
    names = {0: "model.layers.0.self_attn.q_proj.weight", 1: "model.layers.1.self_attn.q_proj.weight"}
    base = {n: w0.to(torch.bfloat16) for n in names.values()}
    a = {names[0]: (w0 + big_a).to(torch.bfloat16), names[1]: (w0 + tiny_a).to(torch.bfloat16)}
    b = {names[0]: (w0 + big_b).to(torch.bfloat16), names[1]: (w0 + tiny_b).to(torch.bfloat16)}
    summary = audit([base, a, b], AuditOptions(rank=16, base=True), progress=False).summary
    assert summary["counts"]["below_noise_floor"] == 2
    assert summary["per_layer"]["1"]["below_noise_floor"] == {"1": 1, "2": 1}
    assert "below_noise_floor" not in summary["per_layer"]["0"]
    warnings = summary["warnings"]
    assert len(warnings) == 3  # one per update, then what would measure them
    for update, sentence in zip((1, 2), warnings):
        assert sentence.startswith(f"update {update}: 1 of 2 tensor rows are below the rounding-noise floor (in layers 1)")
        assert "layers 1 have none left, so no conclusion about them (e.g. 'orthogonal') is supported" in sentence
    assert "float32" in warnings[2] and "--min-snr" in warnings[2]
