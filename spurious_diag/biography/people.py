"""Seeded generator of synthetic people with six attributes.

A person has a unique full name (first + last), a gender (for pronouns) and the paper's six
attributes: birth date, birth city, university, major, employer and employer city, the last
one determined by the employer. Values are drawn uniformly and independently from
:mod:`spurious_diag.biography.pools`.

:func:`generate_people` is a pure function of ``(n, seed)``: the same arguments give the same
people, on any machine (Python's :class:`random.Random` with an integer seed is stable across
versions and platforms).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from typing import Sequence

from ..errors import UsageError
from . import pools

__all__ = ["ATTRIBUTES", "Person", "generate_people", "generate_more_people", "derived_rng", "max_people"]

# The order is the paper's; QA records and evaluation tables follow it.
ATTRIBUTES: tuple[str, ...] = ("birth_date", "birth_city", "university", "major", "employer", "employer_city")

_FIRST_NAMES: tuple[tuple[str, str], ...] = tuple(
    [(name, "female") for name in pools.FEMALE_FIRST_NAMES] + [(name, "male") for name in pools.MALE_FIRST_NAMES]
)


@dataclass(frozen=True)
class Person:
    """One synthetic individual. ``person_id`` is its index in the generated list."""

    person_id: int
    first_name: str
    last_name: str
    gender: str  # "female" or "male"
    birth_date: str  # "<Month> <day>, <year>", e.g. "October 2, 1996"
    birth_city: str
    university: str
    major: str
    employer: str
    employer_city: str

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def value(self, attribute: str) -> str:
        """The value of one of :data:`ATTRIBUTES`."""
        if attribute not in ATTRIBUTES:
            raise KeyError(f"unknown attribute {attribute!r}; expected one of {ATTRIBUTES}")
        return getattr(self, attribute)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def derived_rng(seed: int, stream: str) -> random.Random:
    """An independent :class:`random.Random` for ``stream`` (e.g. ``"people"``) under ``seed``.

    Streams are separated by hashing, so adding draws to one stream never shifts another.

    >>> derived_rng(0, "people").random() == derived_rng(0, "people").random()
    True
    >>> derived_rng(0, "people").random() == derived_rng(0, "bios").random()
    False
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UsageError(f"seed must be a non-negative int, got {seed!r}")
    digest = hashlib.sha256(f"{stream}:{seed}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def max_people() -> int:
    """How many people the name pools allow (full names are unique)."""
    return len(_FIRST_NAMES) * len(pools.LAST_NAMES)


def generate_people(n: int, seed: int) -> list[Person]:
    """Generate ``n`` people with unique full names, ids ``0..n-1``.

    Args:
        n: number of people, at most :func:`max_people` (10 000).
        seed: non-negative int; the only source of randomness.

    >>> people = generate_people(3, seed=0)
    >>> [p.person_id for p in people]
    [0, 1, 2]
    >>> people == generate_people(3, seed=0)
    True
    """
    if n < 0 or n > max_people():
        raise UsageError(f"n must be in [0, {max_people()}], got {n}")
    rng = derived_rng(seed, "people")
    name_codes = rng.sample(range(max_people()), n)
    return [_person(person_id, code, rng) for person_id, code in enumerate(name_codes)]


def generate_more_people(existing: Sequence[Person], n: int, seed: int, stream: str) -> list[Person]:
    """``n`` more people whose full names differ from ``existing``'s and from each other, ids
    continuing after the largest existing one, drawn from their own stream (``existing`` is not
    redrawn, so a scenario keeps its people and its hash).

    >>> base = generate_people(4, seed=0)
    >>> more = generate_more_people(base, 3, seed=0, stream="task2")
    >>> [p.person_id for p in more], {p.full_name for p in more} & {p.full_name for p in base}
    ([4, 5, 6], set())
    """
    n_last = len(pools.LAST_NAMES)
    taken = {(p.first_name, p.last_name) for p in existing}
    free = [code for code in range(max_people()) if (_FIRST_NAMES[code // n_last][0], pools.LAST_NAMES[code % n_last])
            not in taken]
    if n < 0 or n > len(free):
        raise UsageError(f"n must be in [0, {len(free)}] (the names left), got {n}")
    rng = derived_rng(seed, f"people:{stream}")
    start = max((p.person_id for p in existing), default=-1) + 1
    return [_person(start + i, code, rng) for i, code in enumerate(rng.sample(free, n))]


def _person(person_id: int, code: int, rng: random.Random) -> Person:
    """The person of name code ``code``, their other attributes drawn from ``rng``."""
    n_last = len(pools.LAST_NAMES)
    first_name, gender = _FIRST_NAMES[code // n_last]
    # Draw order is part of the data's identity (the hash): employer, date, city, university, major.
    employer, employer_city = rng.choice(pools.EMPLOYERS)
    birth_date = f"{rng.choice(pools.MONTHS)} {rng.choice(pools.BIRTH_DAYS)}, {rng.choice(pools.BIRTH_YEARS)}"
    return Person(
        person_id=person_id,
        first_name=first_name,
        last_name=pools.LAST_NAMES[code % n_last],
        gender=gender,
        birth_date=birth_date,
        birth_city=rng.choice(pools.CITIES),
        university=rng.choice(pools.UNIVERSITIES),
        major=rng.choice(pools.MAJORS),
        employer=employer,
        employer_city=employer_city,
    )
