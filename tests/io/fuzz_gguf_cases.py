"""GGUF fuzz cases (600), run by test_fuzz_headers.py in a memory-capped child process."""

import os
import tempfile

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from spurious_diag import load_checkpoint
from spurious_diag.errors import SpuriousDiagError


def _load_all(data: bytes, suffix: str) -> None:
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


