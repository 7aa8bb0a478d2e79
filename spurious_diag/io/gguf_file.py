"""Lazy reader of ``.gguf`` files under Hugging Face parameter names.

GGUF stores llama.cpp names (``blk.0.attn_q.weight``), reversed shapes and
quantized blocks. Rather than re-deriving llama.cpp's conventions, this reader
reuses transformers' own GGUF machinery, one tensor at a time:

* the config comes from the GGUF metadata (``load_gguf_checkpoint`` without tensors);
* the GGUF → HF name map from ``get_gguf_hf_weights_map`` on a model built on the
  ``meta`` device (no memory);
* each tensor is dequantized with ``gguf.dequantize`` and passed through the same
  per-architecture ``TensorProcessor`` transformers uses (undoing llama.cpp's q/k
  row permutation for Llama, the ``+1`` of Gemma norms, ...).

So ``load_checkpoint("x.gguf")[name]`` equals what
``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` puts in ``name``,
while only that one tensor is dequantized. Values are float32.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointNotFoundError, CorruptCheckpointError, UnsupportedFormatError
from .checkpoint import TensorInfo
from .hf_dir import require_nonempty_file

__all__ = ["GGUFFile"]

logger = logging.getLogger(__name__)


# Byte sizes of GGUF metadata value types (8 = string, 9 = array are variable).
_GGUF_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def validate_gguf_header(path: str) -> None:
    """Walk a GGUF header with every length and count checked against the file size.

    ``gguf.GGUFReader`` trusts the counts it reads: a corrupt array length makes it loop and
    allocate until the machine runs out of memory. This walk only reads, and stops at the
    first count that cannot fit in the bytes that remain.

    Raises:
        CorruptCheckpointError: bad magic, or a length, count or tensor size that cannot fit.
    """
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        data = f.read(min(size, 256 * 2**20))  # metadata lives at the front

    def fail(msg: str) -> None:
        raise CorruptCheckpointError(f"not a readable GGUF file ({msg})", path)

    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            fail(f"header field at byte {pos} runs past the end of the file")
        out = data[pos:pos + n]
        pos += n
        return out

    def u32() -> int:
        return struct.unpack("<I", take(4))[0]

    def u64() -> int:
        return struct.unpack("<Q", take(8))[0]

    def string() -> None:
        take(u64())

    def value(kind: int, depth: int = 0) -> None:
        if kind in _GGUF_SCALAR_SIZES:
            take(_GGUF_SCALAR_SIZES[kind])
        elif kind == 8:
            string()
        elif kind == 9 and depth == 0:
            inner, count = u32(), u64()
            smallest = _GGUF_SCALAR_SIZES.get(inner, 8)
            if count * smallest > len(data) - pos:
                fail(f"array of {count} elements cannot fit in the file")
            for _ in range(count):
                value(inner, depth + 1)
        else:
            fail(f"unknown metadata value type {kind}")

    if take(4) != b"GGUF":
        fail("bad magic")
    version = u32()
    if version not in (2, 3):
        fail(f"unsupported version {version}")
    n_tensors, n_kv = u64(), u64()
    if n_tensors > size // 24 or n_kv > size // 12:
        fail(f"{n_tensors} tensors and {n_kv} metadata entries cannot fit in {size} bytes")
    for _ in range(n_kv):
        string()
        value(u32())
    for _ in range(n_tensors):
        string()
        n_dims = u32()
        if n_dims > 8:
            fail(f"tensor with {n_dims} dimensions")
        n_elements = 1
        for _ in range(n_dims):
            n_elements *= u64()
        u32()
        u64()
        if n_elements > 32 * size:  # ≥ 1/4 byte per element in every GGUF type
            fail(f"a tensor of {n_elements} elements cannot be stored in {size} bytes")


def _open_reader(path: str) -> Any:
    from gguf import GGUFReader

    try:
        return GGUFReader(path, "r")
    except FileNotFoundError:
        raise CheckpointNotFoundError("no such file", path) from None
    except Exception as exc:  # gguf raises ValueError, struct.error, IndexError... on bad bytes
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CorruptCheckpointError(f"not a readable GGUF file ({type(exc).__name__}: {msg})", path) from None


class GGUFFile:
    """A :class:`~spurious_diag.io.checkpoint.TensorReader` over one GGUF file.

    Attributes:
        config: the HF config dict read from the GGUF metadata.
        tied: stored name → aliases, e.g. the LM head when only ``token_embd`` is stored.
    """

    def __init__(self, path: str):
        self.path = str(path)
        require_nonempty_file(self.path)
        validate_gguf_header(self.path)
        self._reader = _open_reader(self.path)
        self.config = self._read_config()
        self._processor, hf_model_state = self._build_name_map()
        self._by_hf: dict[str, Any] = {}
        self._infos: dict[str, TensorInfo] = {}
        for tensor in self._reader.tensors:
            hf_name = self._gguf_to_hf.get(tensor.name)
            if hf_name is None:
                logger.info("%s: GGUF tensor %s has no HF counterpart; skipped", self.path, tensor.name)
                continue
            shape = tuple(int(d) for d in reversed([int(x) for x in tensor.shape]))
            self._by_hf[hf_name] = tensor
            self._infos[hf_name] = TensorInfo(hf_name, shape, torch.float32, self.path)
        self.tied: dict[str, tuple[str, ...]] = {}
        if self.config.get("tie_word_embeddings"):
            head = [n for n in hf_model_state if n.endswith("lm_head.weight") and n not in self._infos]
            embeds = [n for n in self._infos if n.endswith("embed_tokens.weight")]
            if head and embeds:
                self.tied[embeds[0]] = tuple(head)

    def _read_config(self) -> dict[str, Any]:
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        try:
            parsed = load_gguf_checkpoint(self.path, return_tensors=False)
        except ValueError as exc:
            raise UnsupportedFormatError(f"GGUF architecture not supported by transformers ({exc})", self.path) from None
        except Exception as exc:
            raise CorruptCheckpointError(f"GGUF metadata unreadable ({type(exc).__name__}: {exc})", self.path) from None
        config = dict(parsed.get("config", {}))
        if "model_type" not in config:
            raise CorruptCheckpointError("GGUF metadata names no architecture", self.path)
        return config

    def _build_name_map(self) -> tuple[Any, list[str]]:
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.modeling_gguf_pytorch_utils import (
            TENSOR_PROCESSORS,
            TensorProcessor,
            get_gguf_hf_weights_map,
        )

        cfg = dict(self.config)
        model_type = cfg.pop("model_type")
        try:
            hf_config = AutoConfig.for_model(model_type, **cfg)
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(hf_config)
        except Exception as exc:
            raise UnsupportedFormatError(f"cannot build a {model_type} model from the GGUF metadata ({exc})", self.path) from None
        architecture = str(self._reader.fields["general.architecture"].contents())
        processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=self.config)
        self._gguf_to_hf = get_gguf_hf_weights_map(model, processor)
        return processor, list(model.state_dict().keys())

    def infos(self) -> dict[str, TensorInfo]:
        return dict(self._infos)

    def load(self, name: str) -> torch.Tensor:
        tensor = self._by_hf[name]
        from gguf import dequantize

        try:
            weights = dequantize(tensor.data, tensor.tensor_type)
            result = self._processor.process(weights=weights, name=tensor.name, tensor_key_mapping=self._gguf_to_hf, parsed_parameters={})
        except Exception as exc:
            raise CorruptCheckpointError(f"cannot dequantize ({type(exc).__name__}: {exc})", self.path, name) from None
        out = torch.from_numpy(np.ascontiguousarray(result.weights, dtype=np.float32).copy())
        expected = self._infos[name].shape
        if tuple(out.shape) != expected:
            out = out.reshape(expected)
        return out

    def close(self) -> None:
        pass
