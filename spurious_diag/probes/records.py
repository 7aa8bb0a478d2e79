"""Probe records: prompt/completion pairs about one attribute of one individual, and person-disjoint splits.

Every probe reads the same kind of record as the trainer (``{"prompt", "completion"}``, plus the
optional ``attribute`` and ``person_id``), as a mapping or as an object with those attributes
(e.g. :class:`~spurious_diag.biography.texts.QARecord`). :func:`as_probe_records` normalizes them:
a missing ``attribute`` becomes ``"all"``, a missing ``person_id`` stays ``None``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..errors import InvalidDataError, UsageError
from ..training.records import check_record

__all__ = ["ProbeRecord", "as_probe_records", "has_person_ids", "split_by_person", "filter_people",
           "attribute_pools"]


@dataclass(frozen=True)
class ProbeRecord:
    """One fact in one format: ``prompt`` + ``completion`` (the value, usually with a leading space)."""

    prompt: str
    completion: str
    attribute: str = "all"
    person_id: Optional[Any] = None

    def as_json(self) -> dict[str, Any]:
        """The record as a JSON object (``person_id`` left out when unknown)."""
        out: dict[str, Any] = {"prompt": self.prompt, "completion": self.completion, "attribute": self.attribute}
        if self.person_id is not None:
            out["person_id"] = self.person_id
        return out


def _one(record: Any, index: int) -> ProbeRecord:
    if isinstance(record, ProbeRecord):
        return record
    fields = check_record(record, f"record {index}")
    attribute = fields.get("attribute")
    return ProbeRecord(fields["prompt"], fields["completion"], "all" if attribute is None else str(attribute),
                       fields.get("person_id"))


def as_probe_records(records: Sequence[Any]) -> list[ProbeRecord]:
    """Normalize mappings / record objects to :class:`ProbeRecord` s (order kept).

    Raises:
        InvalidDataError: a record without a string prompt or a non-empty completion.

    >>> as_probe_records([{"prompt": "Q?", "completion": " A", "person_id": 3}])[0]
    ProbeRecord(prompt='Q?', completion=' A', attribute='all', person_id=3)
    """
    return [_one(r, i) for i, r in enumerate(records)]


def has_person_ids(records: Sequence[ProbeRecord]) -> bool:
    """True when every record names its individual."""
    return bool(records) and all(r.person_id is not None for r in records)


def split_by_person(records: Sequence[ProbeRecord], *, test_fraction: float = 0.5,
                    seed: int = 0) -> tuple[list[ProbeRecord], list[ProbeRecord]]:
    """Split into (other, held_out): by individual when every record has a ``person_id``, else by record.

    The individuals (or records) are shuffled with ``random.Random(seed)`` and the first
    ``round(test_fraction · count)`` (at least 1, at most count − 1) are held out. Order within
    each part follows the input.

    >>> rs = as_probe_records([{"prompt": f"q{i}", "completion": " a", "person_id": i // 2} for i in range(8)])
    >>> other, held = split_by_person(rs, test_fraction=0.5, seed=0)
    >>> len(held), {r.person_id for r in other} & {r.person_id for r in held}
    (4, set())
    """
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"test_fraction must be in (0, 1), got {test_fraction}")
    keys: list[Any] = ([r.person_id for r in records] if has_person_ids(records) else list(range(len(records))))
    unique = list(dict.fromkeys(keys))
    if len(unique) < 2:
        raise InvalidDataError(f"cannot split {len(unique)} individual(s) into two parts")
    order = unique[:]
    random.Random(seed).shuffle(order)
    n_held = min(max(1, round(test_fraction * len(order))), len(order) - 1)
    held = set(order[:n_held])
    other = [r for r, k in zip(records, keys) if k not in held]
    held_out = [r for r, k in zip(records, keys) if k in held]
    return other, held_out


def filter_people(records: Sequence[ProbeRecord], people: set[Any]) -> list[ProbeRecord]:
    """The records about the given individuals (records without a ``person_id`` are dropped)."""
    return [r for r in records if r.person_id is not None and r.person_id in people]


def attribute_pools(records: Sequence[ProbeRecord]) -> dict[str, list[str]]:
    """Candidate pool per attribute: the distinct completions of that attribute, first-seen order.

    >>> attribute_pools(as_probe_records([{"prompt": "a", "completion": " x", "attribute": "c"},
    ...                                   {"prompt": "b", "completion": " y", "attribute": "c"}]))
    {'c': [' x', ' y']}
    """
    pools: dict[str, dict[str, None]] = {}
    for r in records:
        pools.setdefault(r.attribute, {})[r.completion] = None
    return {a: list(values) for a, values in pools.items()}


def split_old_task(old_task_records: Sequence[Any], recovery_records: Optional[Sequence[Any]], *,
                   test_fraction: float, seed: int) -> tuple[list[ProbeRecord], list[ProbeRecord], dict[str, Any]]:
    """(held-out records, recovery pool, how the split was made) of a diagnosis's old-task records.

    With ``recovery_records``, all of ``old_task_records`` is held out and the pool is
    ``recovery_records``; else the old-task records are split by :func:`split_by_person`.

    Raises:
        InvalidDataError: recovery records sharing individuals with the old-task records.
    """
    old = as_probe_records(old_task_records)
    if recovery_records:
        pool, held = as_probe_records(recovery_records), old
        if has_person_ids(pool) and has_person_ids(held):
            shared = {r.person_id for r in pool} & {r.person_id for r in held}
            if shared:
                raise InvalidDataError(f"recovery records share {len(shared)} individuals with the old-task records")
        by = "recovery_records"
    else:
        pool, held = split_by_person(old, test_fraction=test_fraction, seed=seed)
        by = "person_id" if has_person_ids(old) else "record"
    return held, pool, {"by": by, "held_out_records": len(held), "recovery_pool_records": len(pool)}
