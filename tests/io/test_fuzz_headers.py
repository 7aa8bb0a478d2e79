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


def test_gguf_fuzz_in_a_memory_capped_process():
    """The GGUF cases run in a child process capped at 4 GB of address space.

    ``gguf.GGUFReader`` trusts counts in the header; ``validate_gguf_header`` now refuses the ones
    that cannot fit, but in one full-suite run (not reproducible in isolation) a case still drove
    a process to 22 GB and the OOM killer. Under the cap such an allocation fails inside the
    child, where it surfaces as the package's CorruptCheckpointError, instead of taking the
    machine (and CI) down. Finding that case is an open item (see the closing note of issue 8).
    """
    import resource
    import subprocess
    import sys

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    cases = os.path.join(os.path.dirname(__file__), "fuzz_gguf_cases.py")
    proc = subprocess.run([sys.executable, "-m", "pytest", cases, "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, preexec_fn=cap, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout and "failed" not in proc.stdout


def test_gguf_array_count_past_the_file_is_refused_before_reading(tmp_path):
    """A corrupt array length once made gguf.GGUFReader allocate until the OOM killer came (22 GB)."""
    key = b"tokenizer.ggml.tokens"
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    header += struct.pack("<IIQ", 9, 8, 2**40)  # an array of 2^40 strings
    path = tmp_path / "huge.gguf"
    path.write_bytes(header + b"\x00" * 64)
    with pytest.raises(SpuriousDiagError, match="cannot fit"):
        load_checkpoint(path)
