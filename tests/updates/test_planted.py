"""End to end: planted orthogonal / shared update subspaces come out as 90° / 0°, untouched tensors as exactly 0."""

import json
import math

import pandas as pd
import pytest
import torch

from spurious_diag import AuditOptions, audit
from spurious_diag.cli import main
from tests.updates.planted import low_rank, orthonormal, save_state, write_lora_adapter
from tests.conftest import tree_digest

R = 4
TOUCHED = [f"model.layers.{b}.self_attn.{m}.weight" for b in (0, 1) for m in ("q_proj", "o_proj")] + [
    f"model.layers.{b}.mlp.down_proj.weight" for b in (0, 1)
]


@pytest.fixture
def planted_chain(make_model, tmp_path):
    """base → task0 (blocks 0–1 changed) → task1 (orthogonal in block 0, same subspace in block 1)."""
    base_dir = tmp_path / "base"
    make_model("llama", num_layers=4).save_pretrained(base_dir)
    from safetensors.torch import load_file

    # float64 on disk, so each update is exactly its planted low-rank matrix (no storage rounding)
    base = {k: v.double() for k, v in load_file(base_dir / "model.safetensors").items()}
    base_dir = save_state(base, base_dir, tmp_path / "base64")
    task0 = dict(base)
    for i, name in enumerate(TOUCHED):
        m, n = base[name].shape
        q = orthonormal(m, seed=100 + i)
        d0 = low_rank(q[:, :R], n, seed=200 + i)
        block = int(name.split(".")[2])
        u1 = q[:, R : 2 * R] if block == 0 else q[:, :R]  # orthogonal vs shared column space
        task0[name] = base[name] + d0
    task1 = dict(task0)
    for i, name in enumerate(TOUCHED):
        m, n = base[name].shape
        q = orthonormal(m, seed=100 + i)
        block = int(name.split(".")[2])
        u1 = q[:, R : 2 * R] if block == 0 else q[:, :R]
        task1[name] = task0[name] + low_rank(u1, n, seed=300 + i)
    return [base_dir, save_state(task0, base_dir, tmp_path / "task0"), save_state(task1, base_dir, tmp_path / "task1")]


def test_cli_reports_planted_angles(planted_chain, tmp_path):
    before = {str(p): tree_digest(p) for p in planted_chain}
    out = tmp_path / "audit"
    assert main(["-q", "audit", *map(str, planted_chain), "--out", str(out), "--rank", str(R)]) == 0
    assert {str(p): tree_digest(p) for p in planted_chain} == before  # inputs untouched
    updates = pd.read_csv(out / "updates.csv")
    pairs = pd.read_csv(out / "pairs.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "report.md").read_text().startswith("# spurious_diag audit")

    touched = pairs[pairs["name"].isin(TOUCHED)]
    assert len(touched) == len(TOUCHED)
    for _, row in touched.iterrows():
        expected = 90.0 if row["layer"] == 0 else 0.0
        assert abs(row["angle_mean_deg"] - expected) < 1.0, row["name"]
        assert abs(row["angle_min_deg"] - expected) < 1.0, row["name"]
        assert row["overlap"] == pytest.approx(0.0 if expected else 1.0, abs=1e-3)
    untouched = updates[~updates["name"].isin(TOUCHED)]
    assert len(untouched) > 0 and (untouched["fro"] == 0.0).all() and (untouched["status"] == "ok").all()
    assert (updates[updates["name"].isin(TOUCHED)]["fro"] > 0).all()
    assert summary["per_layer"]["0"]["angle_mean_deg"]["1-2"] == pytest.approx(90.0, abs=1.0)
    assert summary["rankings"]["by_orthogonality"]["1-2"][0] == 0


def test_base_mode_and_cosines(planted_chain):
    chain = audit([str(p) for p in planted_chain], AuditOptions(rank=R, dtype=torch.float64), progress=False)
    based = audit([str(p) for p in planted_chain], AuditOptions(rank=2 * R, base=True, dtype=torch.float64), progress=False)
    assert list(based.summary["updates"][1].values())[:3] == [2, 0, 2]
    name = "model.layers.0.self_attn.q_proj.weight"
    row = chain.pairs[chain.pairs["name"] == name].iloc[0]
    # orthogonal column spaces → orthogonal updates (random directions: ≈ 0.02)
    assert abs(row["cosine"]) < 1e-12 < row["cosine_random"]
    # base mode: update 2 = task0 + task1 (rank 2R) contains update 1's rank-R subspace
    brow = based.pairs[based.pairs["name"] == name].iloc[0]
    assert (brow["rank_a"], brow["rank_b"]) == (R, 2 * R)  # bases capped at the numerical rank
    assert brow["angle_mean_deg"] < 1e-3 and brow["overlap"] == pytest.approx(1.0, abs=1e-9)
    upd = chain.updates[chain.updates["name"] == name].set_index("update")
    from spurious_diag import load_checkpoint

    a, b = load_checkpoint(planted_chain[0])[name], load_checkpoint(planted_chain[1])[name]
    ref = torch.linalg.norm(b - a).item()
    assert upd.loc[1, "fro"] == pytest.approx(ref, rel=1e-12)
    assert upd.loc[1, "rms"] == pytest.approx(ref / math.sqrt(a.numel()), rel=1e-12)
    assert upd.loc[1, "rel"] == pytest.approx(ref / torch.linalg.norm(a).item(), rel=1e-12)


def test_lora_adapter_chain_matches_densified(make_model, tmp_path):
    base_dir = tmp_path / "base"
    make_model("llama", num_layers=2).save_pretrained(base_dir)
    from safetensors.torch import load_file

    base = load_file(base_dir / "model.safetensors")
    adapters, merged = [], []
    targets = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"]
    for t in range(2):
        g = torch.Generator().manual_seed(t)
        factors = {}
        state = dict(base)
        for name in targets:
            m, n = base[name].shape
            B, A = torch.randn(m, R, generator=g) * 0.1, torch.randn(R, n, generator=g) * 0.1
            factors[name] = (B, A)
            state[name] = (base[name].double() + (16 / R) * (B.double() @ A.double())).float()
        adapters.append(write_lora_adapter(tmp_path / f"lora{t}", factors, alpha=16, r=R))
        merged.append(save_state(state, base_dir, tmp_path / f"merged{t}"))
    opts = AuditOptions(rank=R, base=True, dtype=torch.float64)
    factored = audit([str(base_dir), *map(str, adapters)], opts, progress=False)
    dense = audit([str(base_dir), *map(str, merged)], opts, progress=False)
    assert factored.summary["updates"][0]["factored"] is True
    key = ["update_a", "update_b", "name", "part"]
    fp = factored.pairs.set_index(key).sort_index()
    dp = dense.pairs.set_index(key).sort_index()
    assert set(fp.index) == set(dp.index)
    for col in ["cosine", "angle_mean_deg", "angle_min_deg", "overlap", "angle_mean_deg_right", "one_sided_mean_deg"]:
        diff = (fp[col] - dp[col]).abs().max()
        # merged weights are float32 on disk: compare to that precision
        assert diff < 1e-5 or (fp[col].isna() & dp[col].isna()).all(), (col, diff)
    fu = factored.updates.set_index(["update", "name", "part"]).sort_index()
    du = dense.updates.set_index(["update", "name", "part"]).sort_index()
    touched = fu.index.get_level_values("name").isin(targets)
    assert ((fu[touched]["fro"] - du[touched]["fro"]).abs() / du[touched]["fro"]).max() < 1e-5
    assert (fu[~touched]["fro"] == 0).all()
