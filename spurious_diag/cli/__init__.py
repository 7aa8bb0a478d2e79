"""The ``spurious-diag`` command line: argument parsing only, one module per command."""

from .app import main

__all__ = ["main"]
