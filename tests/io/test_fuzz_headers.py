"""Fuzzing the safetensors and GGUF header parsers: bad bytes give the package's own errors, never a crash.

Over 2,000 generated cases run in CI (hypothesis, derandomized so CI is reproducible).
"""

import json
import os
import struct
import tempfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spurious_diag import load_checkpoint
from spurious_diag.errors import SpuriousDiagError

FUZZ = settings(max_examples=600, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _load_all(data: bytes, suffix: str) -> None:
    """Write ``data`` to a file and read every tensor; only SpuriousDiagError may escape."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x" + suffix)
        with open(path, "wb") as f:
            f.write(data)
        try:
            ckpt = load_checkpoint(path)
            for name in ckpt:
                ckpt[name]
        except SpuriousDiagError:
            pass


def _valid_safetensors() -> bytes:
    from safetensors.torch import save

    return save({"a": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5, dtype=torch.bfloat16)})


VALID_ST = _valid_safetensors()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
entries = st.fixed_dictionaries({}, optional={
    "dtype": st.sampled_from(["F32", "BF16", "F16", "I64", "U8", "BOOL", "F8_E4M3", "XX", ""]) | json_values,
    "shape": st.lists(st.integers(-3, 2**40), max_size=4) | json_values,
    "data_offsets": st.lists(st.integers(-5, 2**40), min_size=0, max_size=3) | json_values,
})


@FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_as_safetensors(data):
    _load_all(data, ".safetensors")


@FUZZ
@given(st.dictionaries(st.text(max_size=8), entries | json_values, max_size=5), st.binary(max_size=64),
       st.integers(-64, 64))
def test_structured_headers(header, payload, length_skew):
    raw = json.dumps(header).encode()
    _load_all(struct.pack("<Q", max(0, len(raw) + length_skew)) + raw + payload, ".safetensors")


@FUZZ
@given(st.integers(0, len(VALID_ST) - 1), st.integers(1, 255), st.integers(0, len(VALID_ST)))
def test_mutated_valid_safetensors(position, xor, cut):
    data = bytearray(VALID_ST)
    data[position] ^= xor
    _load_all(bytes(data[: max(cut, 1)]) if cut < position else bytes(data), ".safetensors")


@pytest.fixture(scope="module")
def valid_gguf(tmp_path_factory):
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", torch.randn(8, 4).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


GGUF_FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@GGUF_FUZZ
@given(data=st.data())
def test_mutated_gguf(valid_gguf, data):
    blob = bytearray(valid_gguf)
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(blob)))
    _load_all(bytes(blob[:cut]) if data.draw(st.booleans()) else bytes(blob), ".gguf")


@GGUF_FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_after_gguf_magic(tail):
    _load_all(b"GGUF" + tail, ".gguf")


def test_gguf_array_count_past_the_file_is_refused_before_reading(tmp_path):
    """A corrupt array length once made gguf.GGUFReader allocate until the OOM killer came (22 GB)."""
    key = b"tokenizer.ggml.tokens"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    header += struct.pack("<IIQ", 9, 8, 2**40)  # an array of 2^40 strings
    path = tmp_path / "huge.gguf"
    path.write_bytes(header + b"\x00" * 64)
    with pytest.raises(SpuriousDiagError, match="cannot fit"):
        load_checkpoint(path)
