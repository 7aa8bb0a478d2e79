"""A comparison's headline numbers (pure pandas): means over seeds, and the paper's claim checked.

The paper (Table of its §5; DESIGN.md §2c) reports Task 0 after the task sequence: SEQ 11.18%,
Freeze (7 layers + early stop) 44.22%, Task Vector 30.75%, EWC, LAMOL and gradient projection
below 22%. Its claim, as checked here: *Freeze at its validation-chosen depth keeps the most Task 0
at the early-stop point among the methods whose newest task at early stop is within
``tolerance`` of SEQ's* (means over seeds).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..continual.tables import mean_over_seeds
from ..ties import first_best

__all__ = ["PAPER_TASK0", "MEAN_COLUMNS", "method_means", "claim"]

# Task 0 exact match after the task sequence, in the paper (percent); None: not reported.
PAPER_TASK0: dict[str, Any] = {"SEQ": 11.18, "Freeze": 44.22, "TaskVector": 30.75, "EWC": "< 22",
                               "LAMOL": "< 22", "GP": "< 22", "REPLAY": None, "MIX": None}

MEAN_COLUMNS = ["task0_after", "task0_dip", "task0_stop", "task0_end", "task1_stop", "task1_end", "stop_step",
                "avg_acc", "bwt"]


def method_means(methods: pd.DataFrame) -> pd.DataFrame:
    """One row per method (in the table's order): ``method``, ``setting``, ``<column>_mean`` /
    ``<column>_std`` (sample s.d. over seeds; NaN for one seed) of :data:`MEAN_COLUMNS`
    (:func:`~spurious_diag.continual.tables.mean_over_seeds`), and ``seeds``.

    >>> t = pd.DataFrame({"method": ["SEQ", "SEQ"], "setting": ["", ""], "seed": [0, 1], "task0_stop": [0.1, 0.3]})
    >>> row = method_means(t).iloc[0]
    >>> round(float(row["task0_stop_mean"]), 3), round(float(row["task0_stop_std"]), 3)
    (0.2, 0.141)
    """
    columns = [c for c in MEAN_COLUMNS if c in methods.columns]
    means = mean_over_seeds(methods[["method", "seed", *columns]], by="method").rename(columns={"n_seeds": "seeds"})
    settings = methods.groupby("method", sort=False)["setting"].agg(
        lambda s: "; ".join(dict.fromkeys(s.fillna("").astype(str))))
    means.insert(1, "setting", means["method"].map(settings))
    return means


def claim(means: pd.DataFrame, tolerance: float) -> dict[str, Any]:
    """Does Freeze keep the most Task 0 at early stop among the methods whose newest task at early
    stop is within ``tolerance`` of SEQ's (means over seeds)?

    Returns:
        ``holds`` (None when SEQ or Freeze is missing), ``best`` (the eligible method with the most
        Task 0 at early stop), ``eligible`` and ``excluded`` (method → its mean task1_stop), the
        ``bound`` on task1_stop, and ``margin`` (Freeze's task0_stop minus the best other
        eligible method's; NaN when Freeze is the only one).
    """
    by = means.set_index("method")
    if "SEQ" not in by.index or "Freeze" not in by.index:
        return {"holds": None, "reason": "needs SEQ and Freeze"}
    bound = float(by.loc["SEQ", "task1_stop_mean"]) - tolerance
    eligible = by[by["task1_stop_mean"] >= bound - 1e-12]
    excluded = by[by["task1_stop_mean"] < bound - 1e-12]
    best = str(eligible.index[first_best(eligible["task0_stop_mean"].tolist())]) if not eligible.empty else None
    others = eligible.drop(index="Freeze", errors="ignore")
    margin = (float(by.loc["Freeze", "task0_stop_mean"]) - float(others["task0_stop_mean"].max())
              if not others.empty else math.nan)
    return {"holds": best == "Freeze" and "Freeze" in eligible.index, "best": best, "bound": bound,
            "tolerance": tolerance, "margin": margin,
            "eligible": {m: float(v) for m, v in eligible["task1_stop_mean"].items()},
            "excluded": {m: float(v) for m, v in excluded["task1_stop_mean"].items()}}
