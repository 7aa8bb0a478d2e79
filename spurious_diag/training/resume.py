"""A run's identity: what it was started with, saved beside its checkpoints and checked on resume.

A run that is killed may only be continued with the inputs and settings it was started with;
otherwise the resumed result would silently mix two runs. ``spurious-diag train --resume`` and
the continual runner both keep a ``run.json`` with their identity (plain JSON data) and check
it here, naming every setting that differs.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping, Union

from ..errors import CheckpointNotFoundError, UsageError
from .checkpoints import write_state_json

__all__ = ["RUN_FILE", "write_identity", "read_identity", "check_identity"]

RUN_FILE = "run.json"

PathLike = Union[str, "os.PathLike[str]"]


def _plain(identity: Mapping[str, Any]) -> dict[str, Any]:
    """As it comes back from JSON (tuples as lists)."""
    return json.loads(json.dumps(identity))


def write_identity(directory: PathLike, identity: Mapping[str, Any]) -> None:
    """Write ``identity`` as ``directory/run.json`` (atomically)."""
    write_state_json(os.path.join(os.fspath(directory), RUN_FILE), _plain(identity))


def read_identity(directory: PathLike, what: str) -> dict[str, Any]:
    """The identity saved in ``directory/run.json``.

    Raises:
        CheckpointNotFoundError: no readable ``run.json`` (``what`` says what was looked for).
    """
    try:
        with open(os.path.join(os.fspath(directory), RUN_FILE), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        raise CheckpointNotFoundError(f"nothing to resume from: no readable {RUN_FILE} of {what}", directory) from None
    if not isinstance(saved, dict):
        raise CheckpointNotFoundError(f"nothing to resume from: {RUN_FILE} is not an object", directory)
    return saved


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def check_identity(saved: Mapping[str, Any], current: Mapping[str, Any], where: PathLike) -> None:
    """Refuse to resume a run whose saved identity differs from the current one.

    Raises:
        UsageError: naming every differing setting, as ``key: <then> then, <now> now``
            (nested keys dotted, e.g. ``config.steps: 2 then, 3 now``).

    >>> check_identity({"config": {"steps": 2}}, {"config": {"steps": 3}}, "out")
    Traceback (most recent call last):
    ...
    spurious_diag.errors.UsageError: out: resume needs the inputs and settings of the run it continues; differing: config.steps: 2 then, 3 now
    """
    then, now = dict(_leaves(_plain(saved))), dict(_leaves(_plain(current)))
    differ = [f"{key}: {then.get(key)!r} then, {now.get(key)!r} now"
              for key in sorted(set(then) | set(now)) if then.get(key) != now.get(key)]
    if differ:
        raise UsageError("resume needs the inputs and settings of the run it continues; differing: "
                         + "; ".join(differ), where)
