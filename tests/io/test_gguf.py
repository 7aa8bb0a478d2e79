"""GGUF: a tiny Llama written as F32 with the gguf writer loads bit-identically; the real SmolLM2 matches transformers."""

from pathlib import Path

import numpy as np
import pytest
import torch

from spurious_diag import load_checkpoint


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # The row permutation llama.cpp's convert_hf_to_gguf.py applies to q/k weights.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_llama_gguf(model, path: Path) -> None:
    """Write ``model`` (a LlamaForCausalLM) as an F32 GGUF file the way llama.cpp names and permutes it."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        data = tensor.detach().float().numpy().copy()
        if name.endswith("q_proj.weight"):
            data = _llama_cpp_permute(data, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            data = _llama_cpp_permute(data, cfg.num_key_value_heads)
        gguf_name = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def tiny_llama_gguf(make_model, tmp_path):
    model = make_model("llama")
    path = tmp_path / "tiny.gguf"
    write_tiny_llama_gguf(model, path)
    return model, path


def test_tiny_f32_gguf_bit_identical(tiny_llama_gguf):
    model, path = tiny_llama_gguf
    ckpt = load_checkpoint(path)
    state = model.state_dict()
    assert ckpt.format == "gguf"
    assert set(ckpt.keys()) == set(state.keys())
    for name, ref in state.items():
        assert ckpt.info(name).shape == tuple(ref.shape), name
        assert torch.equal(ckpt[name], ref), name  # q/k permutation undone exactly
    assert ckpt.num_layers == model.config.num_hidden_layers


def test_tiny_gguf_matches_transformers_load(tiny_llama_gguf):
    from transformers import AutoModelForCausalLM

    _, path = tiny_llama_gguf
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    ckpt = load_checkpoint(path)
    for name, ref in hf.state_dict().items():
        if name in ckpt:
            assert torch.equal(ckpt[name], ref), name


@pytest.mark.slow
def test_real_smollm2_gguf_matches_transformers(smollm2_gguf):
    from transformers import AutoModelForCausalLM

    ckpt = load_checkpoint(smollm2_gguf)
    assert len(ckpt) == 272 and ckpt.num_layers == 30
    assert ckpt.tied == {"model.embed_tokens.weight": ("lm_head.weight",)}
    hf = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32)
    state = hf.state_dict()
    for name in ckpt:
        assert ckpt.info(name).shape == tuple(state[name].shape), name
        assert torch.equal(ckpt[name], state[name]), name
