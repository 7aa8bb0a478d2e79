"""One tensor of an audit: its layer map entry, stored shape, dtypes, orientation and fused parts.

Every update is compared output axis first, (out, in): GPT-2 ``Conv1D`` weights are stored
(in, out) and transposed, extra trailing axes are flattened into ``in``, and fused
projections are split into their parts (:func:`~spurious_diag.io.orientation.split_parts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch

from ..io.checkpoint import Checkpoint
from ..io.layer_map import ParamInfo
from ..io.orientation import Part, output_axis, split_parts
from .plan import Source

__all__ = ["TensorContext", "tensor_context", "part_shape", "orient"]


@dataclass
class TensorContext:
    """What the audit needs to know about tensor ``name`` before reading it.

    Attributes:
        name: the stored name; info: its layer map entry (layer, module, Conv1D flag).
        shape: the stored shape (CKPT_0's); dtype_label: the stored dtypes of every full
            checkpoint, e.g. ``float32`` or ``bfloat16/float32``.
        parts: the fused parts (one part, ``""``, for an unfused tensor).
        out_axis: the stored axis of output features (0, or 1 for a Conv1D weight).
    """

    name: str
    info: ParamInfo
    shape: tuple[int, ...]
    dtype_label: str
    parts: list[Part]
    out_axis: int

    @property
    def is_matrix(self) -> bool:
        """A weight with at least two rows and two columns: it has singular vectors to compare."""
        return len(self.shape) >= 2 and min(self.shape[0], math.prod(self.shape[1:])) >= 2

    def part_ids(self) -> torch.Tensor:
        """Fused-part index of every output feature (int64, length ``shape[out_axis]``)."""
        n = self.shape[self.out_axis] if self.shape else 1
        ids = torch.zeros(n, dtype=torch.long)
        for k, part in enumerate(self.parts):
            ids[part.index] = k
        return ids


def tensor_context(name: str, sources: Sequence[Source]) -> TensorContext:
    """The :class:`TensorContext` of ``name``, from CKPT_0's header (and every full checkpoint's dtype)."""
    base = sources[0]
    assert isinstance(base, Checkpoint)
    info = base.param_info(name)
    shape = tuple(base.info(name).shape)
    dtypes = sorted({str(s.info(name).dtype).replace("torch.", "") for s in sources if isinstance(s, Checkpoint)})
    out_axis = output_axis(info, len(shape))
    out_features = shape[out_axis] if shape else 1
    parts = split_parts(info, out_features, base.config) if len(shape) >= 1 else [Part("", info.module, slice(0, 1))]
    return TensorContext(name, info, shape, "/".join(dtypes), parts, out_axis)


def part_shape(ctx: TensorContext, part: Part) -> tuple[int, ...]:
    """Shape of a part in (out, in) orientation."""
    if len(ctx.shape) < 2:
        n = _index_len(part.index, ctx.shape[0] if ctx.shape else 1)
        return (n,)
    out_features = ctx.shape[ctx.out_axis]
    in_features = ctx.shape[1 - ctx.out_axis]
    rest = 1
    for d in ctx.shape[2:]:
        rest *= d
    return (_index_len(part.index, out_features), in_features * rest)


def _index_len(index: Union[slice, torch.Tensor], n: int) -> int:
    return len(range(*index.indices(n))) if isinstance(index, slice) else int(index.numel())


def orient(t: torch.Tensor, ctx: TensorContext) -> torch.Tensor:
    """(out, in) orientation of a stored tensor, extra trailing axes flattened into ``in``."""
    if ctx.out_axis == 1:
        t = t.mT
    return t.reshape(t.shape[0], -1)
