import re

import pytest

from spurious_diag.biography import pools
from spurious_diag.biography.people import ATTRIBUTES, generate_people, max_people
from spurious_diag.biography.tokenizer import split_pieces

DATE = re.compile(r"^(January|February|March|April|May|June|July|August|September|October|November|December) "
                  r"([1-9]|1[0-9]|2[0-8]), (19[5-9][0-9]|200[0-4])$")


def test_same_seed_same_people_other_seed_other_people():
    assert generate_people(50, seed=7) == generate_people(50, seed=7)
    assert generate_people(50, seed=7) != generate_people(50, seed=8)


def test_full_names_unique_and_values_from_pools():
    people = generate_people(1000, seed=0)
    assert len({p.full_name for p in people}) == 1000
    employer_city = dict(pools.EMPLOYERS)
    for p in people:
        assert DATE.match(p.birth_date), p.birth_date
        assert p.birth_city in pools.CITIES and p.university in pools.UNIVERSITIES and p.major in pools.MAJORS
        assert p.employer_city == employer_city[p.employer]
        first_names = pools.FEMALE_FIRST_NAMES if p.gender == "female" else pools.MALE_FIRST_NAMES
        assert p.first_name in first_names and p.last_name in pools.LAST_NAMES


def test_values_are_varied():
    people = generate_people(600, seed=0)
    for attribute, at_least in [("birth_city", 150), ("university", 90), ("major", 55), ("employer", 150)]:
        assert len({p.value(attribute) for p in people}) >= at_least, attribute


def test_pool_sizes_and_no_name_word_is_a_value_word():
    assert (len(pools.FEMALE_FIRST_NAMES) + len(pools.MALE_FIRST_NAMES), len(pools.LAST_NAMES)) == (100, 100)
    assert (len(pools.CITIES), len(pools.UNIVERSITIES), len(pools.MAJORS), len(pools.EMPLOYERS)) == (200, 100, 60, 200)
    for pool in (pools.CITIES, pools.UNIVERSITIES, pools.MAJORS, [e for e, _ in pools.EMPLOYERS],
                 pools.FEMALE_FIRST_NAMES + pools.MALE_FIRST_NAMES, pools.LAST_NAMES):
        assert len(set(pool)) == len(pool)
    assert {c for _, c in pools.EMPLOYERS} <= set(pools.CITIES)
    name_words = set(pools.FEMALE_FIRST_NAMES + pools.MALE_FIRST_NAMES + pools.LAST_NAMES)
    value_words = {w for pool in (pools.CITIES, pools.UNIVERSITIES, pools.MAJORS, [e for e, _ in pools.EMPLOYERS])
                   for v in pool for w in split_pieces(v)}
    assert not name_words & value_words


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_people(max_people() + 1, seed=0)
    with pytest.raises(ValueError):
        generate_people(3, seed=-1)
    with pytest.raises(KeyError):
        generate_people(1, seed=0)[0].value("shoe_size")
    assert len(ATTRIBUTES) == 6
