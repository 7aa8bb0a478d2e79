"""Freeze-and-train: freeze the embeddings and bottom blocks, prove the frozen weights never moved."""

from .callback import FreezeCallback
from .freezing import FreezeReport, freeze_bottom_layers, frozen_names, remove_frozen_from_optimizer
from .verify import FrozenCheck, assert_frozen, verify_frozen

__all__ = [
    "FreezeReport",
    "freeze_bottom_layers",
    "frozen_names",
    "remove_frozen_from_optimizer",
    "FreezeCallback",
    "FrozenCheck",
    "verify_frozen",
    "assert_frozen",
]
