"""Read and check the DeepSpeed config of ``spurious-diag train --deepspeed CONFIG.json``.

The Trainer takes DeepSpeed's own JSON config (``"auto"`` values are filled from the training
settings). ``train`` accepts ZeRO stages 0–2, which keep every parameter whole on every rank, so
each rank checks its frozen tensors bit for bit as in one process; stage 3 partitions the
parameters themselves and is refused. DeepSpeed runs on the CPU too (its CPU accelerator, gloo):
``torchrun --nproc_per_node 2 -m spurious_diag train ... --deepspeed ds.json``.

>>> import json, tempfile
>>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
...     json.dump({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}, f)
>>> zero_stage(read_deepspeed_config(f.name, batch_size=8, check_installed=False))
2
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import InvalidDataError, UsageError
from .settings import read_json_object

__all__ = ["MAX_ZERO_STAGE", "read_deepspeed_config", "zero_stage"]

# ZeRO-3 shards the parameters: a rank would hold (and check) only a slice of each frozen tensor.
MAX_ZERO_STAGE = 2


def zero_stage(config: dict[str, Any]) -> int:
    """The ZeRO stage a DeepSpeed config asks for (0 when it has no ``zero_optimization``)."""
    return int((config.get("zero_optimization") or {}).get("stage", 0))


def read_deepspeed_config(path: str, *, batch_size: int, check_installed: bool = True) -> dict[str, Any]:
    """The DeepSpeed config in ``path``, checked for what ``train`` supports.

    Args:
        path: a DeepSpeed JSON config file.
        batch_size: the run's sequences per step and process, which the config's
            ``train_micro_batch_size_per_gpu`` must equal unless it is ``"auto"`` or absent.
        check_installed: refuse when the ``deepspeed`` package is missing (before any model is loaded).

    Returns:
        The config as a dict (for ``TrainingArguments(deepspeed=...)``).

    Raises:
        InvalidDataError: a missing file, not JSON, not an object, or a non-integer stage.
        UsageError: ZeRO stage 3 (or above), a micro-batch size other than ``batch_size``, or
            ``deepspeed`` not installed.
    """
    config = read_json_object(path, "DeepSpeed config")
    try:
        stage = zero_stage(config)
    except (TypeError, ValueError, AttributeError):
        raise InvalidDataError(f"zero_optimization.stage must be an integer, got {config.get('zero_optimization')!r}",
                               path) from None
    if stage > MAX_ZERO_STAGE:
        raise UsageError(f"ZeRO stage {stage} partitions the parameters, so no rank could check whole frozen tensors; "
                         f"use stage {MAX_ZERO_STAGE} or lower", path)
    micro = config.get("train_micro_batch_size_per_gpu", "auto")
    if micro != "auto" and micro != batch_size:
        raise UsageError(f"train_micro_batch_size_per_gpu is {micro!r} but the run's batch size is {batch_size}: "
                         "set it to \"auto\" (or to --batch-size)", path)
    if check_installed and importlib.util.find_spec("deepspeed") is None:
        raise UsageError("--deepspeed needs the deepspeed package: pip install deepspeed")
    return config
