"""LoRA with the paper's freeze: adapters only on blocks >= k, the base bit-identical, and the
saved adapter audited factored exactly as the merged model is audited dense."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from spurious_diag import AuditOptions, audit, load_checkpoint, parse_param_name
from spurious_diag.biography.pretrain import shipped_base_dir
from spurious_diag.cli import main
from spurious_diag.errors import FrozenWeightsChangedError, UsageError
from spurious_diag.freeze.lora import add_lora_above, base_state
from tests.conftest import tiny_model, tree_digest
from tests.training.test_finetune import jsonl  # noqa: F401  (the fixture)


def _train(jsonl_path, out, *extra: str) -> dict:
    code = main(["-q", "--threads", "1", "train", "--model", str(shipped_base_dir()), "--data", str(jsonl_path),
                 "--out", str(out), "--steps", "6", "--lr", "3e-3", "--batch-size", "4", *extra])
    assert code == 0
    return json.loads((out / "train_summary.json").read_text())


def test_adapters_only_above_the_frozen_depth_and_the_base_untouched(jsonl, tmp_path):  # noqa: F811
    before = tree_digest(shipped_base_dir())
    summary = _train(jsonl, tmp_path / "a", "--lora-rank", "4", "--freeze-layers", "2")
    assert summary["lora"] and summary["frozen_bit_identical"] is True and 0 < summary["trainable_fraction"] < 0.1
    assert tree_digest(shipped_base_dir()) == before
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["layers_to_transform"] == [2, 3]
    with safe_open(tmp_path / "a" / "adapter_model.safetensors", "pt") as f:
        layers = {parse_param_name(n.replace("base_model.model.", ""), 4).layer for n in f.keys()}
        b_norm = sum(float(f.get_tensor(n).norm()) for n in f.keys() if "lora_B" in n)
    assert layers == {2, 3}  # no module in blocks < k, none in the embeddings (layer -1)
    assert b_norm > 0  # and the adapters did train (B starts at zero)


def test_factored_audit_equals_the_dense_audit_of_the_merged_models(jsonl, tmp_path):  # noqa: F811
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapters = []
    for seed in (0, 1):
        out = tmp_path / f"adapter{seed}"
        _train(jsonl, out, "--lora-rank", "4", "--freeze-layers", "1", "--seed", str(seed), "--lora-modules",
               "q_proj,v_proj,down_proj")
        adapters.append(out)
    merged = []
    for out in adapters:
        base = AutoModelForCausalLM.from_pretrained(shipped_base_dir(), dtype=torch.float64)
        model = PeftModel.from_pretrained(base, out).merge_and_unload()  # W + alpha/r B A, in float64
        model.to(torch.float64).save_pretrained(tmp_path / f"merged-{out.name}")
        merged.append(tmp_path / f"merged-{out.name}")
    options = AuditOptions(rank=4, dtype="float64", noise_floor=False)
    factored = audit([shipped_base_dir(), *adapters], options, progress=False).pairs
    dense = audit([shipped_base_dir(), *merged], AuditOptions(rank=4, dtype="float64", noise_floor=False, base=True),
                  progress=False).pairs
    keys = ["update_a", "update_b", "name", "part"]
    factored = factored[factored["status"] == "ok"].set_index(keys)
    dense = dense[dense["status"] == "ok"].set_index(keys).loc[factored.index]
    assert len(factored) == 3 * 3  # q, v and down in blocks 1..3
    assert {parse_param_name(n, 4).layer for n in factored.index.get_level_values("name")} == {1, 2, 3}
    assert factored["angle_min_deg"].between(0.5, 89.5).all()  # real angles, not 0 or 90 by construction
    for column in ("angle_mean_deg", "angle_min_deg", "angle_mean_deg_right", "one_sided_mean_deg"):
        assert (factored[column] - dense[column]).abs().max() < 0.01, column


def test_the_base_check_catches_a_moved_weight(tmp_path):
    from spurious_diag.training.finetune import _verify_lora_base

    model = tiny_model("llama", num_layers=4)
    model.save_pretrained(tmp_path / "base")
    wrapped, placement = add_lora_above(model, 2, rank=2)
    assert set(base_state(wrapped)) == set(load_checkpoint(tmp_path / "base"))
    _verify_lora_base(str(tmp_path / "base"), wrapped)  # untouched: passes
    with torch.no_grad():
        wrapped.get_base_model().model.layers[0].mlp.up_proj.weight.add_(1e-3)
    with pytest.raises(FrozenWeightsChangedError, match="model.layers.0.mlp.up_proj.weight"):
        _verify_lora_base(str(tmp_path / "base"), wrapped)


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "phi3"])
def test_placement_across_architectures(arch):
    wrapped, placement = add_lora_above(tiny_model(arch, num_layers=4), 3, rank=2)
    assert placement.adapted and {parse_param_name(n, 4).layer for n in placement.adapted} == {3}
    assert all(not p.requires_grad for n, p in wrapped.named_parameters() if "lora_" not in n)


def test_bad_lora_settings_are_usage_errors(jsonl, tmp_path, capsys):  # noqa: F811
    with pytest.raises(UsageError, match="no block for adapters"):
        add_lora_above(tiny_model("llama", num_layers=2), 2, rank=2)
    with pytest.raises(UsageError, match="target modules"):
        add_lora_above(tiny_model("llama", num_layers=2), 0, rank=2, modules=("no_such_proj",))
    for bad in (["--lora-rank", "0"], ["--lora-alpha", "4"], ["--lora-rank", "2", "--save-every", "2"]):
        code = main(["train", "--model", str(shipped_base_dir()), "--data", str(jsonl), "--out",
                     str(tmp_path / "never"), *bad])
        assert code == 2 and capsys.readouterr().err.count("error:") == 1
    assert not (tmp_path / "never").exists()


def test_diagnose_reads_an_adapter_directory_as_after(jsonl, tmp_path):  # noqa: F811
    """A LoRA AFTER is its adapter merged into BEFORE: the same diagnosis as the merged model saved dense."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from spurious_diag import DiagnoseOptions, diagnose
    from spurious_diag.biography.pretrain import load_base_model

    _train(jsonl, tmp_path / "adapter", "--lora-rank", "8", "--freeze-layers", "1", "--steps", "20", "--lr", "1e-2")
    base = AutoModelForCausalLM.from_pretrained(shipped_base_dir())
    PeftModel.from_pretrained(base, tmp_path / "adapter").merge_and_unload().save_pretrained(tmp_path / "merged")
    data = load_base_model().scenario()
    old = [{"prompt": r.prompt, "completion": r.completion, "person_id": r.person_id} for r in data.probes("task0_test")]
    options = DiagnoseOptions(probes=("grafting", "geometry"), graft_ks=(0, 1, 4))
    kwargs = dict(base=shipped_base_dir(), tokenizer=load_base_model().tokenizer, options=options)
    from_adapter = diagnose(shipped_base_dir(), tmp_path / "adapter", old[:60], **kwargs)
    from_dense = diagnose(shipped_base_dir(), tmp_path / "merged", old[:60], **kwargs)
    for name in ("accuracy", "grafting"):
        a, b = from_adapter.frames[name], from_dense.frames[name]
        assert a.drop(columns=[c for c in a.columns if c in ("model",)]).equals(
            b.drop(columns=[c for c in b.columns if c in ("model",)])), name
    geometry = from_adapter.frames["geometry"]
    assert len(geometry) and from_adapter.settings["inputs"]["after"] == "adapter"
