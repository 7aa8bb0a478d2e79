import json
import re

import pytest

from spurious_diag.biography.people import ATTRIBUTES
from spurious_diag.biography.scenario import (PRETRAINING_SPLITS, SPLITS, ScenarioSizes, build_scenario, read_jsonl,
                                              scenario_from_manifest, write_scenario)
from spurious_diag.biography.texts import BIOGRAPHY_TEMPLATES, QUESTION_TEMPLATES
from spurious_diag.errors import InvalidDataError, OutputDirError


def test_hash_is_a_function_of_the_seed(scenario):
    again = build_scenario(seed=0)
    assert again.canonical_json() == scenario.canonical_json()
    assert again.sha256 == scenario.sha256
    assert build_scenario(seed=1).sha256 != scenario.sha256
    assert build_scenario(seed=0, bios_per_person=4).sha256 != scenario.sha256


def test_default_sizes_and_counts(scenario):
    assert [len(scenario.people_in(s)) for s in SPLITS] == [200, 40, 160, 200]
    counts = scenario.manifest()["counts"]
    assert counts["biographies"] == 400 * 5 == len(scenario.pretraining_texts())
    assert [counts[f"qa_{s}"] for s in SPLITS] == [1200, 240, 960, 1200]


def test_splits_are_disjoint_and_cover_everyone(scenario):
    ids = {s: {p.person_id for p in scenario.people_in(s)} for s in SPLITS}
    names = {s: {p.full_name for p in scenario.people_in(s)} for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not ids[a] & ids[b] and not names[a] & names[b]
    assert set().union(*ids.values()) == set(range(600))
    assert all(scenario.split_of(p.person_id) == s for s in SPLITS for p in scenario.people_in(s))


def test_pretraining_corpus_holds_exactly_the_pretraining_people(scenario):
    corpus = "\n".join(scenario.pretraining_texts())
    for person in scenario.people_in("task1"):
        assert person.full_name not in corpus
    pretraining_ids = {p.person_id for s in PRETRAINING_SPLITS for p in scenario.people_in(s)}
    assert {b.person_id for b in scenario.biographies} == pretraining_ids
    for person in scenario.people_in("task0_test"):
        assert person.full_name in corpus


def test_biographies_state_every_value_and_vary(scenario):
    by_person = {}
    for record in scenario.biographies:
        by_person.setdefault(record.person_id, []).append(record.text)
    for pid, texts in list(by_person.items())[:50]:
        person = scenario.people[pid]
        assert len(set(texts)) == 5
        for text in texts:
            assert text.startswith(person.full_name + " ")
            assert all(person.value(a) in text for a in ATTRIBUTES)
            assert len(re.findall(r"\.(?: |$)", text)) == 6
    openings = {text.split(" ")[2] for texts in by_person.values() for text in texts}
    assert len(openings) > 10  # shuffled orders and varied templates


def test_templates_end_with_the_value():
    for attribute, templates in BIOGRAPHY_TEMPLATES.items():
        assert len(templates) >= 5
        for template in templates:
            assert template.startswith("{subject} ") and template.endswith(" {value}.")


def test_qa_format_is_exact(scenario):
    records = scenario.qa("task0_test")
    expected = [(p, a) for p in scenario.people_in("task0_test") for a in ATTRIBUTES]
    assert len(records) == len(expected)
    for record, (person, attribute) in zip(records, expected):
        assert record.person_id == person.person_id and record.attribute == attribute
        assert record.prompt == QUESTION_TEMPLATES[attribute].format(name=person.full_name) + "\nAnswer:"
        assert record.completion == " " + person.value(attribute)
        assert record.as_json() == {"prompt": record.prompt, "completion": record.completion}
    first = records[1]
    assert re.fullmatch(r"What is the birth city of [A-Z][a-z]+ [A-Z][a-z]+\?\nAnswer:", first.prompt)


def test_probes_are_biography_sentences_up_to_the_value(scenario):
    person = scenario.people_in("task0_train")[0]
    probes = scenario.probes("task0_train")[:6]
    for probe, attribute in zip(probes, ATTRIBUTES):
        assert probe.kind == "probe" and probe.attribute == attribute
        assert probe.prompt.startswith(person.full_name + " ") and not probe.prompt.endswith(" ")
        assert probe.completion == " " + person.value(attribute)
    assert probes[1].prompt == f"{person.full_name} was born in"


def test_write_and_read_back(small_scenario, tmp_path):
    out = write_scenario(small_scenario, tmp_path / "data")
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["manifest.json", "people.jsonl", "pretrain.jsonl"]
                           + [f"{k}_{s}.jsonl" for k in ("qa", "probes") for s in SPLITS])
    rows = read_jsonl(out / "qa_task1.jsonl")
    assert rows == [r.as_json() for r in small_scenario.qa("task1")]
    assert all(set(r) == {"prompt", "completion"} for r in rows)
    assert [r["text"] for r in read_jsonl(out / "pretrain.jsonl")] == small_scenario.pretraining_texts()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sha256"] == small_scenario.sha256
    assert scenario_from_manifest(manifest).sha256 == small_scenario.sha256
    with pytest.raises(OutputDirError):
        write_scenario(small_scenario, out)


def test_manifest_hash_mismatch_is_an_error(small_scenario):
    manifest = dict(small_scenario.manifest(), sha256="0" * 64)
    with pytest.raises(InvalidDataError):
        scenario_from_manifest(manifest)
    with pytest.raises(InvalidDataError):
        scenario_from_manifest({"schema_version": 1})


def test_bad_sizes():
    with pytest.raises(ValueError):
        ScenarioSizes(task1=-1)
    with pytest.raises(ValueError):
        ScenarioSizes(task0_train=20_000)
