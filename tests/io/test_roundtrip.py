"""Tiny models saved in every layout load back with the stored names, shapes, dtypes and values."""

import json

import pytest
import torch

from spurious_diag import load_checkpoint
from tests.conftest import save_bin

ARCHS = ["llama", "gpt2", "gpt_neox", "gemma3"]


def _stored_state(model):
    """The state dict as stored on disk: tied aliases dropped (save_pretrained does the same)."""
    seen, out = set(), {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out[name] = t
    return out


def _assert_same(ckpt, state):
    assert set(ckpt.keys()) == set(state.keys())
    for name, ref in state.items():
        info = ckpt.info(name)
        assert info.shape == tuple(ref.shape) and info.dtype == ref.dtype, name
        got = ckpt[name]
        assert got.dtype == ref.dtype and torch.equal(got, ref), name


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_safetensors_dir_roundtrip(arch, layout, make_model, tmp_path):
    model = make_model(arch)
    model.save_pretrained(tmp_path, max_shard_size="20KB" if layout == "sharded" else "5GB")
    if layout == "sharded":
        assert (tmp_path / "model.safetensors.index.json").exists()
    ckpt = load_checkpoint(tmp_path)
    # independent reference: safetensors' own eager loader over every file written
    from safetensors.torch import load_file

    reference = {}
    for f in sorted(tmp_path.glob("*.safetensors")):
        reference.update(load_file(f))
    _assert_same(ckpt, reference)
    assert len(reference) == len(_stored_state(model))
    assert ckpt.num_layers == 2
    assert len(ckpt.files) == (1 if layout == "single" else len(set(json.loads(
        (tmp_path / "model.safetensors.index.json").read_text())["weight_map"].values())))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shards", [1, 3])
def test_bin_roundtrip(arch, shards, make_model, tmp_path):
    model = make_model(arch)
    state = {k: v.clone() for k, v in _stored_state(model).items()}
    save_bin(state, tmp_path, shards=shards, config=model.config)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.format == "bin"
    _assert_same(ckpt, state)


def test_bare_safetensors_file_and_dtypes(tmp_path):
    from safetensors.torch import save_file

    state = {
        "a.weight": torch.randn(3, 5, dtype=torch.bfloat16),
        "b.weight": torch.randn(7, dtype=torch.float16),
        "c.ids": torch.arange(4, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
    }
    save_file(state, tmp_path / "w.safetensors")
    ckpt = load_checkpoint(tmp_path / "w.safetensors")
    _assert_same(ckpt, state)
    assert ckpt.config is None and ckpt.tied == {}


def test_tied_weights_listed_once(make_model, tmp_path):
    model = make_model("gpt2")  # GPT-2 ties its LM head to wte
    model.save_pretrained(tmp_path)
    ckpt = load_checkpoint(tmp_path)
    assert "lm_head.weight" not in ckpt
    assert ckpt.tied == {"transformer.wte.weight": ("lm_head.weight",)}
    with pytest.raises(KeyError, match="tied"):
        ckpt["lm_head.weight"]
    # the same facts from memory
    mem = load_checkpoint(model)
    assert set(mem.keys()) == set(ckpt.keys()) and mem.tied == ckpt.tied


def test_untied_llama_has_no_alias(make_model, tmp_path):
    model = make_model("llama")
    model.save_pretrained(tmp_path)
    ckpt = load_checkpoint(tmp_path)
    assert "lm_head.weight" in ckpt and ckpt.tied == {}


def test_in_memory_returns_copies(make_model):
    model = make_model("llama")
    ckpt = load_checkpoint(model)
    w = ckpt["model.layers.0.self_attn.q_proj.weight"]
    w.zero_()
    assert model.model.layers[0].self_attn.q_proj.weight.abs().sum() > 0
    state_ckpt = load_checkpoint(model.state_dict())
    assert state_ckpt.format == "state_dict" and len(state_ckpt) == len(ckpt)


def test_mapping_is_read_only(make_model):
    ckpt = load_checkpoint(make_model("llama"))
    with pytest.raises(TypeError):
        ckpt["x"] = torch.zeros(1)
    assert not hasattr(ckpt, "__setitem__") and not hasattr(ckpt, "pop")


def test_lazy_one_tensor_per_access(make_model, tmp_path, monkeypatch):
    model = make_model("llama")
    model.save_pretrained(tmp_path)
    ckpt = load_checkpoint(tmp_path)
    from spurious_diag.io.safetensors_file import SafetensorsFile

    calls = []
    original = SafetensorsFile.load
    monkeypatch.setattr(SafetensorsFile, "load", lambda self, name: calls.append(name) or original(self, name))
    _ = ckpt.infos(), list(ckpt.keys()), ckpt.header_hash()
    assert calls == []
    ckpt["model.norm.weight"]
    assert calls == ["model.norm.weight"]


def test_returned_tensors_are_independent(make_model, tmp_path):
    """Editing a returned tensor in place changes neither later reads nor the file."""
    from tests.conftest import tree_digest

    make_model("llama").save_pretrained(tmp_path)
    before = tree_digest(tmp_path)
    ckpt = load_checkpoint(tmp_path)
    name = "model.layers.0.mlp.up_proj.weight"
    first = ckpt[name]
    reference = first.clone()
    first.add_(1.0)
    assert torch.equal(ckpt[name], reference)
    assert tree_digest(tmp_path) == before


def test_row_reads_match_whole_reads_and_never_alias(make_model, tmp_path):
    """load_rows over some or all rows equals slicing the whole tensor; editing what it returned
    changes neither the file nor the next read."""
    make_model("llama").save_pretrained(tmp_path)
    ckpt = load_checkpoint(tmp_path)
    name = "model.embed_tokens.weight"
    whole = ckpt[name].clone()
    n = whole.shape[0]
    for start, stop in [(0, n), (0, 5), (7, n), (3, 4)]:
        rows = ckpt.load_rows(name, start, stop)
        assert torch.equal(rows, whole[start:stop])
        rows.add_(1.0)
        assert torch.equal(ckpt.load_rows(name, start, stop), whole[start:stop])
    assert torch.equal(load_checkpoint(tmp_path)[name], whole)
