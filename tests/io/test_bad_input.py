"""Every bad input gets a specific error naming the file; the source is never touched; the CLI prints one line."""

import json
import struct

import pytest
import torch

from spurious_diag import load_checkpoint
from spurious_diag.cli import main
from spurious_diag.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    MissingShardError,
    NoWeightsError,
    SpuriousDiagError,
)
from tests.conftest import tree_digest


def _safetensors(tmp_path, name="w.safetensors"):
    from safetensors.torch import save_file

    path = tmp_path / name
    save_file({"a": torch.randn(4, 4), "b": torch.randn(8)}, path)
    return path


def _truncated(tmp_path):
    path = _safetensors(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    return path


def _bad_header_length(tmp_path):
    path = _safetensors(tmp_path)
    data = bytearray(path.read_bytes())
    data[0:8] = struct.pack("<Q", 10**12)
    path.write_bytes(bytes(data))
    return path


def _flipped_json(tmp_path):
    path = _safetensors(tmp_path)
    data = bytearray(path.read_bytes())
    data[9] ^= 0xFF  # inside the JSON header
    path.write_bytes(bytes(data))
    return path


def _bad_offsets(tmp_path):
    path = _safetensors(tmp_path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["a"]["data_offsets"] = [0, 8]
    raw = json.dumps(header).encode().ljust(n)
    path.write_bytes(data[:8] + raw[:n] + data[8 + n :])
    return path


def _zero_length(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"")
    return path


def _missing_shard(tmp_path, make_model):
    make_model("llama").save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    return tmp_path


def _index_missing_tensor(tmp_path, make_model):
    make_model("llama").save_pretrained(tmp_path, max_shard_size="20KB")
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first_shard = next(iter(index["weight_map"].values()))
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = first_shard
    index_path.write_text(json.dumps(index))
    return tmp_path


def _empty_dir(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def _no_weights_dir(tmp_path):
    d = tmp_path / "cfg only"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "README.md").write_text("hi")
    return d


def _corrupt_bin(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"PK\x03\x04 this is not a real zip archive" * 10)
    return tmp_path


def _corrupt_gguf(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    return path


CASES = {
    "missing path": (lambda tmp, mk: tmp / "does-not-exist", CheckpointNotFoundError),
    "empty dir": (lambda tmp, mk: _empty_dir(tmp), CheckpointNotFoundError),
    "dir without weights": (lambda tmp, mk: _no_weights_dir(tmp), NoWeightsError),
    "truncated safetensors": (lambda tmp, mk: _truncated(tmp), CorruptCheckpointError),
    "header length past EOF": (lambda tmp, mk: _bad_header_length(tmp), CorruptCheckpointError),
    "flipped header byte": (lambda tmp, mk: _flipped_json(tmp), CorruptCheckpointError),
    "inconsistent offsets": (lambda tmp, mk: _bad_offsets(tmp), CorruptCheckpointError),
    "zero-length safetensors": (lambda tmp, mk: _zero_length(tmp), CorruptCheckpointError),
    "index names missing shard": (_missing_shard, MissingShardError),
    "index names missing tensor": (_index_missing_tensor, MissingShardError),
    "corrupt .bin": (lambda tmp, mk: _corrupt_bin(tmp), CorruptCheckpointError),
    "corrupt .gguf": (lambda tmp, mk: _corrupt_gguf(tmp), CorruptCheckpointError),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_typed_error_naming_file(case, tmp_path, make_model):
    build, error = CASES[case]
    source = build(tmp_path, make_model)
    before = tree_digest(source) if source.exists() else {}
    with pytest.raises(error) as info:
        ckpt = load_checkpoint(source)
        for name in ckpt:  # errors found only when reading a tensor count too
            ckpt[name]
    assert isinstance(info.value, SpuriousDiagError)
    assert info.value.path is not None
    assert str(source) in str(info.value) or str(info.value.path).startswith(str(source))
    after = tree_digest(source) if source.exists() else {}
    assert before == after


@pytest.mark.parametrize("case", ["missing path", "truncated safetensors", "index names missing shard", "empty dir"])
def test_cli_prints_one_line_and_exits_nonzero(case, tmp_path, make_model, capsys):
    build, error = CASES[case]
    source = build(tmp_path, make_model)
    capsys.readouterr()  # drop what building the fixture printed
    code = main(["layers", str(source)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == error.exit_code != 0
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("spurious-diag layers: error: ") and str(source) in err[0]
