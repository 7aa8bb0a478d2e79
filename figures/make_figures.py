"""Regenerate every figure in this folder from a demo run (running the demo when none is given).

    python figures/make_figures.py [--run runs/demo]

The same as ``spurious-diag figures --out figures [--run DIR]``; the PNGs committed here are
its output.
"""

from __future__ import annotations

import os
import sys

from spurious_diag.cli.app import main

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.exit(main(["figures", "--out", here, *sys.argv[1:]]))
