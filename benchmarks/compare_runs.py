"""Compare two demo runs number by number: ``summary.json`` and every CSV, to the last digit.

    python benchmarks/compare_runs.py RUN_A RUN_B

The demo is deterministic (seeded data orders, one thread per run), so a refactor that keeps the
behaviour must reproduce a run exactly. Ignored: timings (``timing``), the summary header
(``schema_version``, ``package``, ``kind``), and absolute paths of the shipped base model. Prints
every difference of a number (or a boolean, or a missing value) and exits 1 when there is one;
differences of text (a reworded sentence) are listed apart and do not fail the comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

IGNORED = {"timing", "schema_version", "package", "kind"}
PATHS = {("scenario", "base_model")}


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if not path and key in IGNORED:
                continue
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, path + (i,))
    else:
        yield path, value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_summaries(a: dict, b: dict) -> tuple[list[str], list[str]]:
    """(the leaves of the two summaries that differ in value or presence, those that differ as text)."""
    left, right = dict(_leaves(a)), dict(_leaves(b))
    values, texts = [], []
    for path in sorted(set(left) | set(right), key=str):
        if path in PATHS or (path in left and path in right and _same(left[path], right[path])):
            continue
        line = (f"summary.json {'/'.join(map(str, path))}: {left.get(path, '<missing>')!r} vs "
                f"{right.get(path, '<missing>')!r}")
        both_text = isinstance(left.get(path), str) and isinstance(right.get(path), str)
        (texts if both_text else values).append(line)
    return values, texts


def compare_tables(a: Path, b: Path) -> list[str]:
    """Every CSV present in either run that is missing in the other or differs in any cell."""
    out = []
    names = sorted({p.name for p in a.glob("*.csv")} | {p.name for p in b.glob("*.csv")})
    for name in names:
        if not (a / name).is_file() or not (b / name).is_file():
            out.append(f"{name}: only in {a if (a / name).is_file() else b}")
            continue
        left, right = pd.read_csv(a / name), pd.read_csv(b / name)
        try:
            pd.testing.assert_frame_equal(left, right, check_exact=True)
        except AssertionError as exc:
            out.append(f"{name}: {str(exc).splitlines()[0]} ({' '.join(str(exc).split())[:300]})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args(argv)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (args.run_a, args.run_b)]
    values, texts = compare_summaries(*summaries)
    differences = values + compare_tables(args.run_a, args.run_b)
    n_leaves = sum(1 for _ in _leaves(summaries[0]))
    n_tables = len(list(args.run_a.glob("*.csv")))
    for line in texts:
        print(f"text only: {line}")
    for line in differences:
        print(line)
    if differences:
        print(f"{len(differences)} differences")
        return 1
    print(f"identical: {n_leaves - len(texts)} of {n_leaves} summary.json values ({len(texts)} reworded texts) and "
          f"{n_tables} tables, every cell (timings aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
