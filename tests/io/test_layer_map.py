"""The layer map over the real parameter names of each architecture (12-block models, built on meta)."""

import re

import pytest
import torch

from spurious_diag import parse_param_name
from tests.conftest import tiny_config

ARCHS = ["llama", "mistral", "qwen2", "gemma", "gemma3", "gpt2", "gpt_neox", "phi", "phi3"]
KNOWN_BLOCK_MODULES = {
    "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "attn.qkv_proj", "attn.q_norm", "attn.k_norm",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "mlp.gate_up_proj",
    "norm.input", "norm.post_attn", "norm.pre_ffn", "norm.post_ffn",
}
L = 12


def _names(arch):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(tiny_config(arch, num_layers=L))
    return list(model.state_dict().keys())


def _independent_block_index(name):
    # Independent reading: split on dots and take the integer that follows the block container.
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p in ("layers", "h") and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


@pytest.mark.parametrize("arch", ARCHS)
def test_every_real_name_maps(arch):
    names = _names(arch)
    positions = {"embed": 0, "head": 0, "block": 0}
    for name in names:
        info = parse_param_name(name, L)
        expected_block = _independent_block_index(name)
        if expected_block is not None:
            assert info.layer == expected_block, name
            assert info.module in KNOWN_BLOCK_MODULES, (name, info.module)
            positions["block"] += 1
        elif info.module in ("embed_tokens", "embed_positions"):
            assert info.layer == -1, name
            positions["embed"] += 1
        else:
            assert info.module in ("norm.final", "lm_head"), (name, info.module)
            assert info.layer == L, name
            positions["head"] += 1
    assert positions["embed"] >= 1 and positions["head"] >= 1
    # every block 0..L-1 is present and nothing else
    assert {parse_param_name(n, L).layer for n in names} == set(range(-1, L + 1))


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_block_one_never_matches_ten(arch):
    names = _names(arch)
    block1 = [n for n in names if parse_param_name(n, L).layer == 1]
    assert block1 and all(not re.search(r"\.1[0-9]\.", n) for n in block1)
    block10 = [n for n in names if parse_param_name(n, L).layer == 10]
    assert block10 and all(re.search(r"\.10\.", n) for n in block10)
    assert len(block1) == len(block10)


def test_fused_and_transposed_layouts():
    c_attn = parse_param_name("transformer.h.3.attn.c_attn.weight")
    assert (c_attn.module, c_attn.transposed, c_attn.fused, c_attn.parts) == ("attn.qkv_proj", True, "contiguous", ("q", "k", "v"))
    assert parse_param_name("transformer.h.3.mlp.c_fc.weight").transposed
    assert not parse_param_name("transformer.h.3.attn.c_attn.bias").transposed
    neox = parse_param_name("gpt_neox.layers.7.attention.query_key_value.weight")
    assert (neox.layer, neox.fused) == (7, "interleaved_per_head")
    phi3 = parse_param_name("model.layers.2.mlp.gate_up_proj.weight")
    assert (phi3.fused, phi3.parts) == ("contiguous", ("gate", "up"))
    assert parse_param_name("model.layers.2.self_attn.q_proj.weight").fused is None


def test_config_forms_and_unknowns():
    from transformers import LlamaConfig

    assert parse_param_name("model.norm.weight", LlamaConfig(num_hidden_layers=5)).layer == 5
    assert parse_param_name("model.norm.weight", {"n_layer": 4}).layer == 4
    head = parse_param_name("lm_head.weight")
    assert head.layer is None and head.position == "head"
    other = parse_param_name("vision_tower.patch_embed.weight")
    assert other.layer is None and other.position == "other"
    # multimodal Gemma 3 text tower and PEFT prefixes
    assert parse_param_name("model.language_model.layers.4.self_attn.k_proj.weight").layer == 4
    lora = parse_param_name("base_model.model.model.layers.11.self_attn.q_proj.lora_B.weight")
    assert (lora.layer, lora.module, lora.param, lora.is_lora) == (11, "attn.q_proj", "lora_B", True)
