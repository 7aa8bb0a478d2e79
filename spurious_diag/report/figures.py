"""Every figure of a demo run, drawn from the CSVs in its output directory and saved as PNG.

:func:`make_figures` is what ``spurious-diag figures`` and ``figures/make_figures.py`` call and
what the demo calls for its report, so a figure can always be regenerated from a run's tables
alone. A figure whose table is missing (e.g. a probe that was skipped) is left out, with a log
line; a table that exists but cannot be drawn is an error.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

import matplotlib.pyplot as plt
import pandas as pd

from ..outputs import atomic_path
from ..plots.demo_figures import FIGURES, Tables

__all__ = ["read_tables", "make_figures"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def read_tables(run_dir: PathLike) -> Tables:
    """Every ``<name>.csv`` of ``run_dir`` as a DataFrame, by name."""
    return {path.stem: pd.read_csv(path) for path in sorted(Path(run_dir).glob("*.csv"))}


def make_figures(run_dir: PathLike, out_dir: PathLike, *, tables: Optional[Tables] = None,
                 dpi: int = 150) -> dict[str, Path]:
    """Draw every figure of :data:`~spurious_diag.plots.demo_figures.FIGURES` whose tables ``run_dir``
    holds; save them as PNG in ``out_dir``.

    Args:
        run_dir: a demo output directory (its CSVs are read unless ``tables`` is given).
        out_dir: where the PNGs go (created if needed; each file written atomically).
        tables: the run's tables already in memory (name → DataFrame, as the CSV stems).
        dpi: resolution of the PNGs.

    Returns:
        figure name → PNG path, in ``FIGURES`` order.
    """
    tables = read_tables(run_dir) if tables is None else tables
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, (needs, draw) in FIGURES.items():
        missing = [n for n in needs if n not in tables or tables[n].empty]
        if missing:
            logger.info("figure %s skipped: no %s table", name, ", ".join(missing))
            continue
        fig = draw(tables)
        path = out / f"{name}.png"
        with atomic_path(os.fspath(path)) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
        plt.close(fig)
        written[name] = path
    logger.info("wrote %d figures to %s", len(written), out)
    return written
