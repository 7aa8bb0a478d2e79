"""Where a comparison keeps its runs, so that a killed one continues (``--resume``).

Every unit of work (a Task 0 model, EWC's Fisher, a run, a Task Vector sweep) has a folder under
the comparison's directory. The unit writes its files there and ``done.json`` last (atomically);
a folder without ``done.json`` is a unit killed midway, emptied and done again. ``config.json``
holds the comparison's configuration: a resume with another one is refused.

    out/config.json
    out/work/task0/<variant>/            model/, curve.csv, attributes.csv, points.csv, done.json
    out/work/fisher/                     fisher.safetensors, done.json
    out/work/runs/<label slug>-s<seed>/  curve.csv, points.csv, done.json (+ checkpoints/ for SEQ)
    out/work/taskvector/<sweep|s<seed>>/ scores.csv, done.json
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import OutputDirError, UsageError
from ..outputs import atomic_write_json, prepare_out_dir

__all__ = ["ComparisonStore"]

DONE = "done.json"


class ComparisonStore:
    """The folders of one comparison.

    Args:
        out_dir: the comparison's directory.
        config: its configuration (JSON-able), written to ``config.json``.
        resume: continue the comparison in ``out_dir`` (its ``config.json`` must equal ``config``).
        overwrite: replace whatever ``out_dir`` holds (without ``resume``).

    Raises:
        OutputDirError: a non-empty ``out_dir`` without ``resume`` or ``overwrite``; ``resume``
            where no comparison was started.
        UsageError: ``resume`` with another configuration than the comparison's.
    """

    def __init__(self, out_dir: os.PathLike | str, config: Mapping[str, Any], *, resume: bool = False,
                 overwrite: bool = False):
        self.root = Path(out_dir)
        config_path = self.root / "config.json"
        wanted = json.loads(json.dumps(dict(config), default=str))
        if resume:
            if not config_path.is_file():
                raise OutputDirError("nothing to resume: no config.json of a comparison", self.root)
            found = json.loads(config_path.read_text(encoding="utf-8"))
            if found != wanted:
                changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
                raise UsageError(f"{self.root} holds a comparison with other settings ({', '.join(changed)}); "
                                 "resume it with the same ones, or start a new one elsewhere")
        else:
            prepare_out_dir(os.fspath(self.root), overwrite=overwrite)
            atomic_write_json(os.fspath(config_path), wanted)

    @property
    def work(self) -> Path:
        return self.root / "work"

    def task0_dir(self, variant: str) -> Path:
        return self.work / "task0" / variant

    def fisher_dir(self) -> Path:
        return self.work / "fisher"

    def run_dir(self, slug: str, seed: int) -> Path:
        return self.work / "runs" / f"{slug}-s{seed}"

    def task_vector_dir(self, name: str) -> Path:
        return self.work / "taskvector" / name

    @staticmethod
    def done(unit: Path) -> Optional[dict[str, Any]]:
        """What a finished unit recorded in ``done.json``; None when it has not finished."""
        path = unit / DONE
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    @staticmethod
    def begin(unit: Path) -> Path:
        """An empty folder for a unit about to run (what a killed attempt left is removed)."""
        if unit.exists():
            shutil.rmtree(unit)
        unit.mkdir(parents=True)
        return unit

    @staticmethod
    def finish(unit: Path, record: Mapping[str, Any]) -> dict[str, Any]:
        """Mark a unit finished (its files are written): ``done.json`` holds ``record``."""
        atomic_write_json(os.fspath(unit / DONE), dict(record))
        return dict(record)
