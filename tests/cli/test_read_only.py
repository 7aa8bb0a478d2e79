"""Every command only reads its inputs: each input file's hash and mtime are the same afterwards."""

import json

import pytest
import torch

from spurious_diag.biography.pretrain import shipped_base_dir
from spurious_diag.cli import main
from tests.conftest import save_bin, tree_digest


@pytest.fixture
def inputs(make_model, tmp_path):
    a, b = tmp_path / "ckpt a", tmp_path / "ckpt b"
    make_model("llama").save_pretrained(a)
    make_model("llama", seed=1).save_pretrained(b)
    model = make_model("llama", seed=2)
    binary = save_bin({k: v.clone() for k, v in model.state_dict().items()}, tmp_path / "bin model", config=model.config)
    data = tmp_path / "train data.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": f"What is the birth city of X{i}?\nAnswer:", "completion": " Boston"})
                              for i in range(8)) + "\n")
    return {"a": a, "b": b, "bin": binary, "data": data, "base": shipped_base_dir()}


COMMANDS = {
    "layers": lambda p, out: ["layers", str(p["a"])],
    "audit": lambda p, out: ["audit", str(p["a"]), str(p["b"]), "--out", str(out)],
    "audit --base --intruders": lambda p, out: ["audit", str(p["a"]), str(p["b"]), str(p["a"]), "--base", "--intruders",
                                                 "--out", str(out)],
    "convert": lambda p, out: ["convert", str(p["bin"]), str(out)],
    "train": lambda p, out: ["--threads", "1", "train", "--model", str(p["base"]), "--data", str(p["data"]), "--out",
                             str(out), "--steps", "2", "--freeze-layers", "1", "--batch-size", "4"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_leaves_inputs_untouched(command, inputs, tmp_path):
    before = {k: tree_digest(v) for k, v in inputs.items()}
    assert main(["-q", *COMMANDS[command](inputs, tmp_path / "out dir")]) == 0
    assert {k: tree_digest(v) for k, v in inputs.items()} == before


def test_tensors_from_inputs_are_private_copies(inputs):
    """Writing into a loaded tensor never reaches the file (private, copy-on-write maps)."""
    from spurious_diag import load_checkpoint

    before = tree_digest(inputs["bin"])
    for source in (inputs["a"], inputs["bin"]):
        ckpt = load_checkpoint(source)
        name = "model.layers.0.mlp.up_proj.weight"
        ckpt[name].add_(1.0)
        rows = ckpt.load_rows(name, 0, 2)
        rows.mul_(0.0)
        assert not torch.equal(ckpt.load_rows(name, 0, 2), rows)
    assert tree_digest(inputs["bin"]) == before
