import pytest

from spurious_diag.probes.format_probe import candidate_ranks, format_probe, pair_facts
from spurious_diag.probes.records import as_probe_records, attribute_pools
from tests.probes.conftest import as_json


def test_base_model_knows_biographies_but_not_qa(bio_base):
    """The pretrained base never saw QA: pretraining format intact, task format broken (known answer)."""
    base, tokenizer, scenario = bio_base
    qa, bios = as_json(scenario.qa("task0_test")[:60]), as_json(scenario.probes("task0_test")[:60])
    result = format_probe({"base": base}, tokenizer, qa, bios, max_candidates=8, seed=0)
    assert result.accuracy("base", "pretraining") > 0.9
    assert result.accuracy("base", "pretraining", "top1") > 0.9
    assert result.accuracy("base", "task") < 0.05
    assert set(result.per_attribute["attribute"]) == {r["attribute"] for r in qa}
    assert (result.per_attribute["n_candidates"] <= 8).all()
    assert set(result.overall["format"]) == {"task", "pretraining"} and (result.overall["n"] == 60).all()


@pytest.mark.parametrize("batch_size, max_candidates", [(16, 5), (3, None), (1, 4)])
def test_shared_prompt_ranking_equals_full_sequences(bio_base, batch_size, max_candidates):
    """Batched prompts of one length with shared caches = every sequence alone (the reference), for
    prompts of several lengths, pools of several sizes and multi-token candidates."""
    base, tokenizer, scenario = bio_base
    records = as_json(scenario.qa("task0_test")[:18])
    prompts = {len(tokenizer(r["prompt"]).input_ids) for r in records}
    values = {len(tokenizer(r["completion"], add_special_tokens=False).input_ids) for r in records}
    assert len(prompts) > 1 and max(values) > 1  # the cases the batching must get right are here
    fast = candidate_ranks(base, tokenizer, records, max_candidates=max_candidates, seed=1, batch_size=batch_size)
    slow = candidate_ranks(base, tokenizer, records, max_candidates=max_candidates, seed=1, share_prompt=False)
    assert list(fast["n_candidates"]) == list(slow["n_candidates"])
    assert list(fast["rank"]) == list(slow["rank"])
    assert fast["logprob"].to_numpy() == pytest.approx(slow["logprob"].to_numpy(), abs=1e-4)
    assert (fast["rank"] >= 1).all() and (fast["rank"] <= fast["n_candidates"]).all()


def test_pools_and_pairing():
    task = as_probe_records([{"prompt": f"q{i}", "completion": f" v{i % 2}", "attribute": "a", "person_id": i}
                             for i in range(4)])
    pre = as_probe_records([{"prompt": f"s{i}", "completion": f" v{i % 2}", "attribute": "a", "person_id": i}
                            for i in range(1, 6)])
    assert attribute_pools(task) == {"a": [" v0", " v1"]}
    t, p = pair_facts(task, pre)
    assert [r.person_id for r in t] == [1, 2, 3] and [r.person_id for r in p] == [1, 2, 3]
