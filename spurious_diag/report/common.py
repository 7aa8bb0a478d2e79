"""What every report shares: CSV and JSON writers, the summary header, table cells and pipe tables.

Every file is written atomically (temporary name, then rename: :mod:`spurious_diag.outputs`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

import pandas as pd

from .._version import __version__
from ..outputs import atomic_path, atomic_write_json

__all__ = ["summary_header", "json_safe", "write_summary", "write_csv", "write_tables", "format_value",
           "frame_markdown", "layer_name"]

PathLike = Union[str, "os.PathLike[str]"]


def summary_header(kind: str, schema_version: int = 1) -> dict[str, Any]:
    """The first keys of every ``summary.json``: its schema version, the package and its version, the kind.

    >>> summary_header("audit")["package"]["name"], summary_header("audit")["kind"]
    ('spurious_diag', 'audit')
    """
    return {"schema_version": schema_version, "package": {"name": "spurious_diag", "version": __version__},
            "kind": kind}


def json_safe(value: Any) -> Any:
    """``value`` with NaN/Inf as None, numpy/torch scalars as Python numbers, tuples as lists (recursively).

    >>> json_safe({"a": float("nan"), "b": (1, 2.5)})
    {'a': None, 'b': [1, 2.5]}
    """
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(path: PathLike, kind: str, content: Mapping[str, Any], schema_version: int = 1) -> dict[str, Any]:
    """Write ``summary_header(kind) + content`` as JSON (NaN as null) to ``path``; returns what was written."""
    summary = json_safe({**summary_header(kind, schema_version), **content})
    atomic_write_json(os.fspath(path), summary)
    return summary


def write_csv(frame: pd.DataFrame, path: PathLike, *, index: bool = False) -> None:
    """``frame`` as CSV at ``path``, atomically; floats in full (round-trip) precision."""
    with atomic_path(os.fspath(path)) as tmp:
        frame.to_csv(tmp, index=index)


def write_tables(out_dir: PathLike, tables: Mapping[str, pd.DataFrame], *, index: Iterable[str] = ()) -> list[Path]:
    """Write each DataFrame as ``<name>.csv`` in ``out_dir`` (created if needed), atomically.

    Args:
        index: names of tables whose index is written too (e.g. an accuracy matrix).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep_index = set(index)
    written = []
    for name, frame in tables.items():
        path = out / f"{name}.csv"
        write_csv(frame, path, index=name in keep_index)
        written.append(path)
    return written


def format_value(x: Any, spec: str = ".3g") -> str:
    """A table cell: ``–`` for None/NaN/Inf, ``yes``/``no`` for booleans, floats with ``spec``.

    >>> format_value(0.123456), format_value(0.2, ".3f"), format_value(float("nan")), format_value(True)
    ('0.123', '0.200', '–', 'yes')
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def frame_markdown(frame: pd.DataFrame, *, max_rows: int = 40) -> str:
    """A pipe table of ``frame`` (first ``max_rows`` rows), cells by :func:`format_value`."""
    cols = list(frame.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(max_rows).itertuples(index=False):
        out.append("| " + " | ".join(format_value(v) for v in row) + " |")
    if len(frame) > max_rows:
        out.append(f"\n({len(frame) - max_rows} more rows in the CSV)")
    return "\n".join(out) + "\n"


def layer_name(layer: int, num_layers: Any) -> str:
    """``embeddings`` (−1), ``block l``, or ``head`` (L: final norm and LM head).

    >>> layer_name(-1, 4), layer_name(2, 4), layer_name(4, 4)
    ('embeddings', 'block 2', 'head')
    """
    if layer < 0:
        return "embeddings"
    if isinstance(num_layers, int) and layer == num_layers:
        return "head"
    return f"block {layer}"
