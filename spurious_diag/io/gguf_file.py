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
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointNotFoundError, CorruptCheckpointError, UnsupportedFormatError
from .checkpoint import TensorInfo
from .hf_dir import require_nonempty_file

__all__ = ["GGUFFile"]

logger = logging.getLogger(__name__)


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
