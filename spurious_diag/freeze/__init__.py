"""Freeze the embeddings and bottom blocks, and prove the frozen weights never moved.

:mod:`.freezing` (``freeze_bottom_layers`` by exact block index; removing frozen tensors from an
optimizer), :mod:`.verify` (bit-identity, one tensor at a time), :mod:`.callback` (freezing at a
step of a ``Trainer`` run).
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "callback": ["FreezeCallback"],
    "freezing": ["FreezeReport", "freeze_bottom_layers", "frozen_names", "remove_frozen_from_optimizer"],
    "verify": ["FrozenCheck", "assert_frozen", "verify_frozen"],
})
