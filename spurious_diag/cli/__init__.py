"""The ``spurious-diag`` command line: argument parsing only, one module per command.

Flags come from the options dataclasses (:mod:`.options`); each command imports the library it
runs only when it runs (:mod:`.app`).
"""

from .app import main

__all__ = ["main"]
