"""Open an audit's inputs and check that they can be compared tensor by tensor.

Inputs are opened lazily (headers only): full checkpoints, PEFT LoRA adapter directories, or
one directory of Trainer ``checkpoint-N`` folders. The full checkpoints must share an
architecture and a block count; their tensor names and shapes are aligned here, so that a
tensor missing from one checkpoint is reported (or skipped) before any tensor is read.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence, Union

from ..errors import MismatchError
from ..io.adapter import LoraAdapter, is_lora_adapter, load_lora_adapter
from ..io.chain import is_chain_dir, list_chain
from ..io.checkpoint import Checkpoint
from ..io.loader import CheckpointSource, load_checkpoint
from .plan import Source

__all__ = ["open_sources", "check_architectures", "aligned_names", "log_dtype_mix"]

logger = logging.getLogger(__name__)


def open_sources(paths: Sequence[Union[CheckpointSource, LoraAdapter]]) -> list[Source]:
    """Open each input lazily: full checkpoints and PEFT LoRA adapter dirs.

    A single directory of Trainer ``checkpoint-N`` folders expands to its chain.
    """
    if len(paths) == 1 and isinstance(paths[0], (str, os.PathLike)) and is_chain_dir(os.fspath(paths[0])):
        paths = [p for _, p in list_chain(os.fspath(paths[0]))]
    sources: list[Source] = []
    for p in paths:
        if isinstance(p, LoraAdapter):
            sources.append(p)
        elif isinstance(p, (str, os.PathLike)) and is_lora_adapter(os.fspath(p)):
            sources.append(load_lora_adapter(os.fspath(p)))
        else:
            sources.append(load_checkpoint(p))
    return sources


def check_architectures(sources: Sequence[Source]) -> None:
    """Raise :class:`MismatchError` when full checkpoints differ in ``model_type`` or block count."""
    full = [s for s in sources if isinstance(s, Checkpoint)]
    ref = full[0]
    for other in full[1:]:
        a, b = (ref.config or {}).get("model_type"), (other.config or {}).get("model_type")
        if a and b and a != b:
            raise MismatchError(f"architecture {b!r} differs from {a!r} of {ref.path}", other.path)
        if ref.num_layers is not None and other.num_layers is not None and ref.num_layers != other.num_layers:
            raise MismatchError(f"{other.num_layers} blocks, but {ref.path} has {ref.num_layers}", other.path)


def aligned_names(sources: Sequence[Source], skip: bool) -> tuple[list[str], dict[str, str]]:
    """Names present with equal shapes in every full checkpoint; the others with the reason.

    Raises:
        MismatchError: names or shapes differ (or an adapter's factors do not fit its base),
            unless ``skip``: then those names come back with the reason instead.
    """
    full = [(i, s) for i, s in enumerate(sources) if isinstance(s, Checkpoint)]
    ref_i, ref = full[0]
    problems: dict[str, tuple[str, str]] = {}  # name -> (reason, path at fault)
    for i, other in full[1:]:
        for name in ref:
            if name not in other:
                problems.setdefault(name, (f"missing in CKPT_{i}", other.path))
            elif other.info(name).shape != ref.info(name).shape:
                problems.setdefault(name, (
                    f"shape {ref.info(name).shape} in CKPT_{ref_i} but {other.info(name).shape} in CKPT_{i}", other.path))
        for name in other:
            if name not in ref:
                problems.setdefault(name, (f"in CKPT_{i} but missing in CKPT_{ref_i}", ref.path))
    for i, s in enumerate(sources):
        if isinstance(s, LoraAdapter):
            for name, (a_name, b_name) in s.factors.items():
                if name not in ref:
                    problems.setdefault(name, (f"adapter CKPT_{i} targets a weight the base does not have", s.path))
                    continue
                out_in = (s.checkpoint.info(b_name).shape[0], s.checkpoint.info(a_name).shape[1])
                stored = out_in[::-1] if ref.param_info(name).transposed else out_in
                if tuple(ref.info(name).shape) != stored:
                    problems.setdefault(name, (
                        f"adapter CKPT_{i} factors give {stored}, base weight is {tuple(ref.info(name).shape)}", s.path))
    if problems and not skip:
        name, (reason, path) = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise MismatchError(f"{reason}{more}; pass --skip-mismatched to audit the rest", path, name)
    return [n for n in ref if n not in problems], {n: f"{reason} ({path})" for n, (reason, path) in problems.items()}


def log_dtype_mix(sources: Sequence[Source], names: Sequence[str], dtype: str) -> None:
    """Warn when a tensor is stored in different dtypes across checkpoints (compared in ``dtype``)."""
    full = [s for s in sources if isinstance(s, Checkpoint)]
    mixed = [n for n in names if len({s.info(n).dtype for s in full}) > 1]
    if mixed:
        kinds = sorted({str(s.info(n).dtype).replace("torch.", "") for n in mixed for s in full})
        logger.warning("dtypes differ across checkpoints (%s) for %d tensors, e.g. %s: compared in %s",
                       "/".join(kinds), len(mixed), mixed[0], dtype)
