"""The audit engine's rules: orientation, fused splits, streaming, mismatches, NaN, dtypes, trajectories."""

import math

import pandas as pd
import pytest
import torch

from spurious_diag import AuditOptions, audit
from spurious_diag.cli import main
from spurious_diag.errors import MismatchError, OutputDirError
from tests.updates.planted import low_rank, orthonormal

OPTS = AuditOptions(rank=4, dtype=torch.float64)


def _perturbed(model, seed, names=None, scale=1e-2):
    g = torch.Generator().manual_seed(seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for k, v in state.items():
        if (names is None or k in names) and v.is_floating_point():
            state[k] = v + scale * torch.randn(v.shape, generator=g)
    return state


def test_conv1d_is_transposed_to_out_in(make_model):
    """A GPT-2 Conv1D update planted in (out, in) orientation gives the same angles as a Linear one."""
    model = make_model("gpt2")
    name = "transformer.h.0.mlp.c_fc.weight"  # stored (in=32, out=128)
    w = model.state_dict()[name].double()
    n_in, n_out = w.shape
    q = orthonormal(n_out, 1)
    d1, d2 = low_rank(q[:, :4], n_in, 2), low_rank(q[:, 4:8], n_in, 3)  # (out, in), orthogonal output spaces
    s0 = {k: v.double() for k, v in model.state_dict().items()}
    s1 = dict(s0, **{name: s0[name] + d1.T})
    s2 = dict(s1, **{name: s1[name] + d2.T})
    res = audit([s0, s1, s2], OPTS, progress=False)
    row = res.pairs[res.pairs["name"] == name].iloc[0]
    assert row["shape"] == f"{n_out}x{n_in}" and row["module"] == "mlp.up_proj"
    assert row["angle_mean_deg"] == pytest.approx(90.0, abs=1e-6)  # left = output space after transposition
    assert row["overlap_random"] == pytest.approx(4 / n_out)


@pytest.mark.parametrize("arch,name,parts", [
    ("gpt2", "transformer.h.1.attn.c_attn.weight", ["q", "k", "v"]),
    ("gpt_neox", "gpt_neox.layers.1.attention.query_key_value.weight", ["q", "k", "v"]),
])
def test_fused_qkv_split_into_parts(make_model, arch, name, parts):
    """Changing only the k rows of a fused QKV shows up in part k alone (per-head interleaving for NeoX)."""
    model = make_model(arch)
    s0 = {k: v.detach().double() for k, v in model.state_dict().items()}
    w = s0[name]
    conv1d = arch == "gpt2"
    oriented = w.T if conv1d else w
    out = oriented.shape[0]
    if arch == "gpt_neox":
        heads = model.config.num_attention_heads
        k_rows = torch.arange(out).view(heads, 3, -1)[:, 1, :].reshape(-1)
    else:
        k_rows = torch.arange(out // 3, 2 * out // 3)
    delta = torch.zeros_like(oriented)
    delta[k_rows] = 0.01
    import copy

    changed = copy.deepcopy(model)  # a module carries its config: heads are needed to undo the interleaving
    changed.load_state_dict({k: v.float() for k, v in dict(s0, **{name: w + (delta.T if conv1d else delta)}).items()})
    res = audit([model, changed], OPTS, progress=False)
    rows = res.updates[res.updates["name"] == name].set_index("part")
    assert list(rows.index) == parts
    assert rows.loc["q", "fro"] == 0.0 and rows.loc["v", "fro"] == 0.0
    ref = (changed.state_dict()[name].double() - model.state_dict()[name].double()).norm()
    assert rows.loc["k", "fro"] == pytest.approx(float(ref), rel=1e-12) and float(ref) > 0
    assert rows.loc["k", "module"] == "attn.k_proj"


@pytest.mark.parametrize("n_checkpoints", [3, 5])
def test_streaming_chunks_give_the_same_tables(make_model, tmp_path, n_checkpoints):
    """Tiny Gram-pass chunks (a row or two at a time) give the same numbers as one chunk, whether
    the updates are kept for the basis pass (two of them) or formed again there (four)."""
    chain = []
    for i, seed in enumerate(range(n_checkpoints)):
        model = make_model("llama", seed=0)
        model.load_state_dict(_perturbed(model, seed) if i else model.state_dict())
        model.save_pretrained(tmp_path / f"c{i}")
        chain.append(str(tmp_path / f"c{i}"))
    big = audit(chain, AuditOptions(rank=4, dtype=torch.float64), progress=False)
    small = audit(chain, AuditOptions(rank=4, dtype=torch.float64, chunk_bytes=1), progress=False)
    cols = ["fro", "rms", "rel"]
    pd.testing.assert_frame_equal(big.updates[cols], small.updates[cols], rtol=1e-12, atol=0)
    pd.testing.assert_frame_equal(big.pairs[["cosine", "angle_mean_deg"]], small.pairs[["cosine", "angle_mean_deg"]],
                                  rtol=1e-12, atol=1e-12)


def test_mismatched_shapes_raise_or_are_reported(make_model):
    a = make_model("llama").state_dict()
    b = dict(a)
    b["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)
    del b["model.norm.weight"]
    with pytest.raises(MismatchError, match="model.layers.0.mlp.up_proj.weight|model.norm.weight"):
        audit([a, b], OPTS, progress=False)
    res = audit([a, b], AuditOptions(rank=4, skip_mismatched=True), progress=False)
    skipped = res.updates[res.updates["status"].str.startswith("skipped")]
    assert set(skipped["name"]) == {"model.layers.0.mlp.up_proj.weight", "model.norm.weight"}
    assert res.summary["counts"]["skipped_rows"] == 2


def test_architecture_and_depth_mismatch(make_model, tmp_path):
    make_model("llama", num_layers=2).save_pretrained(tmp_path / "a")
    make_model("llama", num_layers=3).save_pretrained(tmp_path / "b")
    make_model("gpt2").save_pretrained(tmp_path / "c")
    with pytest.raises(MismatchError, match="blocks"):
        audit([str(tmp_path / "a"), str(tmp_path / "b")], OPTS, progress=False)
    with pytest.raises(MismatchError, match="architecture"):
        audit([str(tmp_path / "a"), str(tmp_path / "c")], OPTS, progress=False)


def test_non_finite_weights_are_reported_not_propagated(make_model):
    a = make_model("llama").state_dict()
    b = _perturbed(make_model("llama"), 1)
    b["model.layers.1.self_attn.q_proj.weight"][0, 0] = float("nan")
    c = _perturbed(make_model("llama"), 2)
    res = audit([a, b, c], OPTS, progress=False)
    bad = res.updates[res.updates["name"] == "model.layers.1.self_attn.q_proj.weight"]
    assert bad["status"].str.startswith("non-finite values in CKPT_1").all() and bad["fro"].isna().all()
    bad_pairs = res.pairs[res.pairs["name"] == "model.layers.1.self_attn.q_proj.weight"]
    assert bad_pairs["angle_mean_deg"].isna().all() and (bad_pairs["status"] != "ok").all()
    good = res.pairs[res.pairs["status"] == "ok"]
    assert good["angle_mean_deg"].notna().all() and good["cosine"].map(math.isfinite).all()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_in_the_last_checkpoint_are_found(make_model, value):
    """The last checkpoint of a chain is no update's source: its NaN/Inf shows up in the update sums."""
    a, b = make_model("llama").state_dict(), _perturbed(make_model("llama"), 1)
    c = _perturbed(make_model("llama"), 2)
    c["model.embed_tokens.weight"][3, 1] = value
    res = audit([a, b, c], OPTS, progress=False)
    rows = res.updates[res.updates["name"] == "model.embed_tokens.weight"]
    assert rows["status"].str.startswith("non-finite values in CKPT_2").all() and rows["fro"].isna().all()
    others = res.updates[res.updates["name"] != "model.embed_tokens.weight"]
    assert (others["status"] == "ok").all() and others["fro"].map(math.isfinite).all()


def test_bf16_vs_fp32_compared_in_fp32(make_model):
    a = make_model("llama").state_dict()
    b = {k: v.to(torch.bfloat16) for k, v in _perturbed(make_model("llama"), 1).items()}
    res = audit([a, b], AuditOptions(rank=4), progress=False)
    row = res.updates[res.updates["name"] == "model.layers.0.mlp.up_proj.weight"].iloc[0]
    assert row["dtype"] == "bfloat16/float32"
    ref = (b["model.layers.0.mlp.up_proj.weight"].double() - a["model.layers.0.mlp.up_proj.weight"].double()).norm()
    assert row["fro"] == pytest.approx(float(ref), rel=1e-6)


def test_trajectory_dir_and_module_filter(make_model, tmp_path):
    model = make_model("llama")
    for step in (5, 10, 20, 40):
        model.load_state_dict(_perturbed(model, step, scale=1e-3))
        model.save_pretrained(tmp_path / "run" / f"checkpoint-{step}")
    res = audit([str(tmp_path / "run")], AuditOptions(rank=4, modules=r"q_proj"), progress=False)
    assert set(res.updates["module"]) == {"attn.q_proj"}
    assert sorted(set(zip(res.pairs["update_a"], res.pairs["update_b"]))) == [(1, 2), (1, 3), (2, 3)]


def test_cli_refuses_non_empty_out_and_out_inside_input(make_model, tmp_path, capsys):
    for i in range(2):
        make_model("llama", seed=i).save_pretrained(tmp_path / f"c{i}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    capsys.readouterr()
    code = main(["audit", str(tmp_path / "c0"), str(tmp_path / "c1"), "--out", str(out)])
    assert code == OutputDirError.exit_code and (out / "old.txt").exists()
    code = main(["audit", str(tmp_path / "c0"), str(tmp_path / "c1"), "--out", str(tmp_path / "c0"), "--overwrite"])
    assert code == OutputDirError.exit_code and (tmp_path / "c0" / "model.safetensors").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("spurious-diag audit: error:") for line in err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_cuda_without_gpu_is_one_line(make_model, tmp_path, capsys):
    for i in range(2):
        make_model("llama", seed=i).save_pretrained(tmp_path / f"c{i}")
    capsys.readouterr()
    code = main(["audit", str(tmp_path / "c0"), str(tmp_path / "c1"), "--out", str(tmp_path / "o"), "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "CUDA" in err[0]


def test_intruder_dimensions_opt_in(make_model):
    """A large new direction orthogonal to the base weight's spectrum is counted as one intruder."""
    model = make_model("llama")
    s0 = {k: v.detach().double() for k, v in model.state_dict().items()}
    name = "model.layers.0.mlp.up_proj.weight"
    w = s0[name]
    u, s, vh = torch.linalg.svd(w)
    # a spike along the base's *weakest* directions, stronger than its top singular value
    spike = 3 * float(s[0]) * torch.outer(u[:, -1], vh[-1])
    s1 = dict(s0, **{name: w + spike})
    res = audit([s0, s1], AuditOptions(rank=4, dtype=torch.float64, intruders=True), progress=False)
    rows = res.updates.set_index("name")
    assert rows.loc[name, "intruders"] == 1
    assert rows.loc["model.layers.1.mlp.up_proj.weight", "intruders"] == 0
    assert "intruders" not in audit([s0, s1], OPTS, progress=False).updates.columns


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_angles_match_cpu(make_model):
    model = make_model("llama")
    s0 = model.state_dict()
    s1, s2 = _perturbed(model, 1), _perturbed(model, 2)
    cpu = audit([s0, s1, s2], AuditOptions(rank=8), progress=False)
    gpu = audit([s0, s1, s2], AuditOptions(rank=8, device="cuda"), progress=False)
    diff = (cpu.pairs["angle_mean_deg"] - gpu.pairs["angle_mean_deg"]).abs().max()
    assert diff < 0.1


def test_zero_size_tensor_is_reported_not_dropped():
    a = {"w": torch.zeros(0, 4), "v": torch.ones(3, 3)}
    b = {"w": torch.zeros(0, 4), "v": torch.zeros(3, 3)}
    res = audit([a, b], OPTS, progress=False)
    row = res.updates.set_index("name").loc["w"]
    assert row["status"].startswith("empty tensor") and row["shape"] == "0x4"
    assert res.updates.set_index("name").loc["v", "fro"] == pytest.approx(3.0)
