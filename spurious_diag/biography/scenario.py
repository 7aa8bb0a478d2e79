"""The Biography scenario: people, splits, biographies, QA and probe records, and a hash.

Splits (all disjoint, DESIGN.md §5):

==============  ==============  ======================================================
split           in pretraining  used for
==============  ==============  ======================================================
``task0_train``  yes            Task 0 QA training; recovery examples come from here
``task0_val``    yes            choosing k, early stopping
``task0_test``   yes            held-out Task 0 accuracy (knowledge extraction)
``task1``        no             Task 1 QA training and Task 1 accuracy (same people)
==============  ==============  ======================================================

Default sizes 200 / 40 / 160 / 200: the pilot's 400 pretraining people and 200 new ones.
The Task 0 training half stays at 200 people (as in the pilot); the other 200 pretrained
people are split 40 validation / 160 test, so held-out accuracy is measured on 960 QA pairs.

:func:`build_scenario` is a pure function of its arguments. ``BiographyData.sha256`` hashes
the canonical JSON (sorted keys, compact separators, UTF-8) of everything generated, so the
same seed gives the same hash and any change of pools, templates or sizes changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

from ..errors import InvalidDataError, UsageError
from ..outputs import atomic_path, staged_dir
from .people import ATTRIBUTES, Person, derived_rng, generate_people, max_people
from .texts import QARecord, biography, probe_record, qa_record

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "PRETRAINING_SPLITS",
    "ScenarioSizes",
    "BiographyRecord",
    "BiographyData",
    "build_scenario",
    "scenario_from_manifest",
    "write_scenario",
    "write_jsonl",
    "read_jsonl",
]

# Bump when the generator's output changes for a given seed (pools, templates, draw order).
SCHEMA_VERSION = 1

SPLITS: tuple[str, ...] = ("task0_train", "task0_val", "task0_test", "task1")
PRETRAINING_SPLITS: tuple[str, ...] = ("task0_train", "task0_val", "task0_test")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ScenarioSizes:
    """Number of people per split."""

    task0_train: int = 200
    task0_val: int = 40
    task0_test: int = 160
    task1: int = 200

    def __post_init__(self) -> None:
        for name in SPLITS:
            if getattr(self, name) < 0:
                raise UsageError(f"split size {name} must be >= 0, got {getattr(self, name)}")
        if self.total > max_people():
            raise UsageError(f"{self.total} people requested, the name pools allow {max_people()}")

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in SPLITS)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class BiographyRecord:
    """One pretraining biography: ``index`` counts the biographies of ``person_id`` from 0."""

    person_id: int
    index: int
    text: str


@dataclass(frozen=True)
class BiographyData:
    """Everything generated for one scenario. Build it with :func:`build_scenario`.

    Attributes:
        seed: the generator seed.
        sizes: people per split.
        bios_per_person: biographies per pretraining person.
        name_repeat_prob: probability that a non-first sentence repeats the full name.
        people: all people, ids ``0..total-1``, in split order (train, val, test, task1).
        biographies: the pretraining corpus, ``bios_per_person`` per pretraining person,
            grouped by person.
    """

    seed: int
    sizes: ScenarioSizes
    bios_per_person: int
    name_repeat_prob: float
    people: tuple[Person, ...]
    biographies: tuple[BiographyRecord, ...] = field(repr=False)

    def split_of(self, person_id: int) -> str:
        """The split a person belongs to."""
        upper = 0
        for name in SPLITS:
            upper += getattr(self.sizes, name)
            if person_id < upper:
                return name
        raise KeyError(f"no person {person_id} in a scenario of {self.sizes.total}")

    def people_in(self, split: str) -> list[Person]:
        """The people of one split, in id order."""
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        start = sum(getattr(self.sizes, name) for name in SPLITS[: SPLITS.index(split)])
        return list(self.people[start : start + getattr(self.sizes, split)])

    def qa(self, split: str, attributes: Sequence[str] = ATTRIBUTES) -> list[QARecord]:
        """QA records of a split: person-major, attributes in :data:`ATTRIBUTES` order."""
        return [qa_record(p, a) for p in self.people_in(split) for a in attributes]

    def probes(self, split: str, attributes: Sequence[str] = ATTRIBUTES) -> list[QARecord]:
        """Pretraining-format probe records of a split (same order as :meth:`qa`)."""
        return [probe_record(p, a) for p in self.people_in(split) for a in attributes]

    def pretraining_texts(self) -> list[str]:
        """The pretraining corpus: every biography of the pretraining people."""
        return [record.text for record in self.biographies]

    def corpus_texts(self) -> list[str]:
        """Every text the scenario can show a model: biographies, QA and probes of all splits.

        The tokenizer's vocabulary is built over this, so Task 1 values have tokens too.
        """
        texts = self.pretraining_texts()
        for split in SPLITS:
            for record in self.qa(split) + self.probes(split):
                texts.append(record.prompt + record.completion)
        return texts

    def canonical_json(self) -> bytes:
        """The generated records as canonical JSON bytes (the input of :attr:`sha256`)."""
        payload = {
            "schema_version": SCHEMA_VERSION,
            "settings": self._settings(),
            "people": [dict(p.as_dict(), split=self.split_of(p.person_id)) for p in self.people],
            "biographies": [asdict(b) for b in self.biographies],
            "qa": [asdict(r) for split in SPLITS for r in self.qa(split)],
            "probes": [asdict(r) for split in SPLITS for r in self.probes(split)],
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json()).hexdigest()

    def _settings(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "sizes": self.sizes.as_dict(),
            "bios_per_person": self.bios_per_person,
            "name_repeat_prob": self.name_repeat_prob,
        }

    def manifest(self) -> dict[str, Any]:
        """Settings, counts and hash; :func:`scenario_from_manifest` rebuilds the data from it."""
        counts = {f"people_{s}": getattr(self.sizes, s) for s in SPLITS}
        counts.update({f"qa_{s}": len(self.qa(s)) for s in SPLITS})
        counts["biographies"] = len(self.biographies)
        return {
            "schema_version": SCHEMA_VERSION,
            **self._settings(),
            "attributes": list(ATTRIBUTES),
            "pretraining_splits": list(PRETRAINING_SPLITS),
            "counts": counts,
            "sha256": self.sha256,
        }


def build_scenario(
    seed: int = 0,
    sizes: ScenarioSizes = ScenarioSizes(),
    *,
    bios_per_person: int = 5,
    name_repeat_prob: float = 0.5,
) -> BiographyData:
    """Generate a scenario: people, splits and the pretraining biographies.

    Args:
        seed: non-negative int, the only source of randomness.
        sizes: people per split.
        bios_per_person: biographies per pretraining person (the paper's multiplicity).
        name_repeat_prob: probability that a sentence after the first repeats the full name
            instead of a pronoun.

    >>> small = build_scenario(seed=1, sizes=ScenarioSizes(2, 1, 1, 1), bios_per_person=2)
    >>> len(small.people), len(small.biographies), len(small.qa("task1"))
    (5, 8, 6)
    >>> small.sha256 == build_scenario(seed=1, sizes=ScenarioSizes(2, 1, 1, 1), bios_per_person=2).sha256
    True
    """
    if bios_per_person < 1:
        raise UsageError(f"bios_per_person must be >= 1, got {bios_per_person}")
    people = tuple(generate_people(sizes.total, seed))
    n_pretraining = sum(getattr(sizes, s) for s in PRETRAINING_SPLITS)
    records = []
    for person in people[:n_pretraining]:
        # One stream per person: a person's biographies do not depend on the others'.
        rng = derived_rng(seed, f"biographies:{person.person_id}")
        for index in range(bios_per_person):
            records.append(BiographyRecord(person.person_id, index,
                                           biography(person, rng, name_repeat_prob=name_repeat_prob)))
    return BiographyData(seed, sizes, bios_per_person, float(name_repeat_prob), people, tuple(records))


def scenario_from_manifest(manifest: Mapping[str, Any], *, verify: bool = True) -> BiographyData:
    """Rebuild the scenario a manifest describes; with ``verify``, check its hash.

    Raises:
        InvalidDataError: missing keys, another schema version, or a hash mismatch.
    """
    try:
        if manifest["schema_version"] != SCHEMA_VERSION:
            raise InvalidDataError(f"scenario schema_version {manifest['schema_version']} "
                                   f"is not this generator's ({SCHEMA_VERSION})")
        data = build_scenario(
            int(manifest["seed"]),
            ScenarioSizes(**manifest["sizes"]),
            bios_per_person=int(manifest["bios_per_person"]),
            name_repeat_prob=float(manifest["name_repeat_prob"]),
        )
    except (KeyError, TypeError) as exc:
        raise InvalidDataError(f"scenario manifest lacks or mistypes a field ({exc})") from None
    if verify and data.sha256 != manifest.get("sha256"):
        raise InvalidDataError(f"regenerated scenario hash {data.sha256[:12]}… differs from the manifest's "
                               f"{str(manifest.get('sha256'))[:12]}…")
    return data


def write_jsonl(path: PathLike, records: Iterable[Mapping[str, Any]]) -> int:
    """Write one JSON object per line (UTF-8), atomically. Returns the number of lines."""
    count = 0
    with atomic_path(os.fspath(path)) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    return count


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Read a JSONL file (blank lines skipped).

    Raises:
        InvalidDataError: a line is not a JSON object.
    """
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidDataError(f"line {lineno}: not JSON ({exc.msg})", path) from None
            if not isinstance(row, dict):
                raise InvalidDataError(f"line {lineno}: not a JSON object", path)
            rows.append(row)
    return rows


def write_scenario(data: BiographyData, out_dir: PathLike, *, overwrite: bool = False) -> Path:
    """Write a scenario as files, built in a staging directory and renamed into place.

    Files: ``manifest.json``; ``people.jsonl`` (every person with its split);
    ``pretrain.jsonl`` (``{"text"}``, the biographies); ``qa_<split>.jsonl`` and
    ``probes_<split>.jsonl`` (``{"prompt", "completion"}``, the train command's format) for each
    split in :data:`SPLITS`, person-major with attributes in :data:`ATTRIBUTES` order.

    Raises:
        OutputDirError: ``out_dir`` is not empty and ``overwrite`` is False.
    """
    with staged_dir(os.fspath(out_dir), overwrite=overwrite) as staging:
        root = Path(staging)
        (root / "manifest.json").write_text(json.dumps(data.manifest(), indent=2) + "\n", encoding="utf-8")
        write_jsonl(root / "people.jsonl",
                    (dict(p.as_dict(), split=data.split_of(p.person_id)) for p in data.people))
        write_jsonl(root / "pretrain.jsonl", ({"text": t} for t in data.pretraining_texts()))
        for split in SPLITS:
            write_jsonl(root / f"qa_{split}.jsonl", (r.as_json() for r in data.qa(split)))
            write_jsonl(root / f"probes_{split}.jsonl", (r.as_json() for r in data.probes(split)))
    return Path(out_dir)
