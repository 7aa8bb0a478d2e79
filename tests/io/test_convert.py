"""``spurious-diag convert``: .bin and GGUF to HF safetensors dirs that transformers loads."""

import pytest
import torch

from spurious_diag import load_checkpoint
from spurious_diag.cli import main
from spurious_diag.errors import OutputDirError
from tests.conftest import save_bin, tree_digest


def test_convert_bin_dir(make_model, tmp_path):
    from transformers import AutoModelForCausalLM

    model = make_model("llama")
    src = save_bin({k: v.clone() for k, v in model.state_dict().items()}, tmp_path / "src", config=model.config)
    before = tree_digest(src)
    assert main(["-q", "convert", str(src), str(tmp_path / "out")]) == 0
    assert tree_digest(src) == before
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for name, ref in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], ref), name
    assert load_checkpoint(tmp_path / "out").format == "safetensors"


def test_convert_bare_bin_file(tmp_path):
    state = {"x.weight": torch.randn(3, 4), "y": torch.arange(5)}
    torch.save(state, tmp_path / "w.bin")
    assert main(["-q", "convert", str(tmp_path / "w.bin"), str(tmp_path / "out")]) == 0
    ckpt = load_checkpoint(tmp_path / "out")
    assert all(torch.equal(ckpt[n], state[n]) for n in state)


def test_convert_refuses_non_empty_out(make_model, tmp_path):
    from spurious_diag.io.convert import convert_checkpoint

    torch.save({"x": torch.ones(2)}, tmp_path / "w.bin")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputDirError):
        convert_checkpoint(str(tmp_path / "w.bin"), str(out))
    assert (out / "keep.txt").read_text() == "precious"
    assert convert_checkpoint(str(tmp_path / "w.bin"), str(out), overwrite=True)
    assert not (out / "keep.txt").exists()


@pytest.mark.slow
def test_smollm2_gguf_converts_and_reloads(smollm2_gguf, smollm2_hf_dir):
    """Integration: the real SmolLM2 GGUF → convert → transformers reload gives the same logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before = tree_digest(smollm2_gguf)
    converted = AutoModelForCausalLM.from_pretrained(smollm2_hf_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf_dir)
    ckpt = load_checkpoint(smollm2_gguf)
    for name in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight"]:
        assert torch.equal(converted.state_dict()[name], ckpt[name])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = converted.generate(ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
    assert tree_digest(smollm2_gguf) == before
