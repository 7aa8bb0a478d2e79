"""Where tensors run: a ``--device`` checked once, and the float dtypes a command accepts.

No behaviour switches on whether CUDA exists: the user asks for a device, and asking for CUDA
where there is none is a one-line usage error (exit 2), never a silent fall-back to the CPU.
"""

from __future__ import annotations

import torch

from .errors import UsageError

__all__ = ["MODEL_DTYPES", "check_device", "model_dtype"]

# The dtypes a model may be loaded in for the probes (names as the command line spells them).
MODEL_DTYPES = ("float32", "bfloat16", "float16")


def check_device(device: str) -> torch.device:
    """``device`` as a :class:`torch.device`, refusing an unknown one or CUDA where there is none.

    Raises:
        UsageError: not a device name, or ``cuda`` without a CUDA device.
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device} asked for, but no CUDA device is available here")
    return dev


def model_dtype(name: str) -> torch.dtype:
    """The torch dtype of one of :data:`MODEL_DTYPES`.

    >>> model_dtype("bfloat16")
    torch.bfloat16

    Raises:
        UsageError: a name outside :data:`MODEL_DTYPES`.
    """
    if name not in MODEL_DTYPES:
        raise UsageError(f"dtype must be one of {MODEL_DTYPES}, got {name!r}")
    return getattr(torch, name)
