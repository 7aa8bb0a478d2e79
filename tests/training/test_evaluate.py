import pytest
import torch

from spurious_diag.biography import ATTRIBUTES
from spurious_diag.training.evaluate import evaluate_records, greedy_generate_match, score_records
from spurious_diag.training.settings import TrainSettings
from spurious_diag.training.trainer import train_model


def _agree(model, tokenizer, records, append_eos=True):
    fast = score_records(model, tokenizer, records, append_eos=append_eos, batch_size=7)["exact_match"].tolist()
    slow = greedy_generate_match(model, tokenizer, records, append_eos=append_eos)
    assert fast == slow
    return fast


def test_teacher_forced_equals_greedy_on_a_random_model(scenario, tokenizer, make_tiny_llama):
    model = make_tiny_llama(seed=1)
    _agree(model, tokenizer, scenario.qa("task0_test")[:12])
    _agree(model, tokenizer, scenario.probes("task0_test")[:12], append_eos=False)


def test_teacher_forced_equals_greedy_on_a_trained_model(scenario, tokenizer, make_tiny_llama):
    model = make_tiny_llama(seed=2)
    seen = scenario.qa("task0_train")[:12]
    # The check must cover both outcomes, so train until some seen records are answered (how many steps
    # that takes depends on the CPU's floating-point path), within a bound.
    for round_ in range(10):
        train_model(model, tokenizer, seen, TrainSettings(steps=40, lr=1e-2, batch_size=12), seed=round_)
        if score_records(model, tokenizer, seen)["exact_match"].any():
            break
    else:
        pytest.fail("precondition: 400 steps on 12 QA records never made one of them an exact match")
    matches = _agree(model, tokenizer, seen + scenario.qa("task1")[:6])
    assert any(matches) and not all(matches)  # the check covers both outcomes
    _agree(model, tokenizer, scenario.probes("task0_train")[:12], append_eos=False)


def test_per_attribute_table(scenario, tokenizer, make_tiny_llama):
    records = scenario.qa("task0_val")
    result = evaluate_records(make_tiny_llama(), tokenizer, records)
    table = result.per_attribute
    assert list(table["attribute"]) == list(ATTRIBUTES)
    assert list(table.columns) == ["attribute", "n", "exact_match", "first_token_acc", "first_token_prob"]
    assert (table["n"] == 40).all()
    assert len(result.per_record) == len(records)
    assert result.exact_match == pytest.approx(table["exact_match"].mean())
    assert ((table["first_token_prob"] > 0) & (table["first_token_prob"] < 1)).all()
    assert (result.per_record["exact_match"] <= result.per_record["first_token_correct"]).all()


def test_first_token_prob_matches_a_direct_computation(scenario, tokenizer, make_tiny_llama):
    model = make_tiny_llama(seed=3)
    record = scenario.qa("task0_val")[4]
    prompt_ids = torch.tensor([tokenizer(record.prompt).input_ids])
    first = tokenizer(record.completion, add_special_tokens=False).input_ids[0]
    with torch.no_grad():
        expected = torch.softmax(model(prompt_ids).logits[0, -1], -1)[first].item()
    row = score_records(model, tokenizer, [record]).iloc[0]
    assert row["first_token_prob"] == pytest.approx(expected, rel=1e-5)
    assert row["n_answer_tokens"] == len(tokenizer(record.completion, add_special_tokens=False).input_ids) + 1


def test_head_at_the_answer_positions_only_equals_the_full_head(scenario, tokenizer, make_tiny_llama, monkeypatch):
    """Llama takes ``logits_to_keep``: the scores computed from the kept positions equal those of full logits."""
    from spurious_diag.training import evaluate

    model = make_tiny_llama(seed=4)
    assert evaluate._keeps_logits(model)
    records = scenario.qa("task0_val")[:10] + scenario.probes("task0_val")[:10]  # two prompt lengths in one batch
    kept = score_records(model, tokenizer, records, batch_size=20)
    monkeypatch.setattr(evaluate, "_keeps_logits", lambda model: False)
    full = score_records(model, tokenizer, records, batch_size=20)
    assert kept[["exact_match", "first_token_correct", "n_answer_tokens"]].equals(
        full[["exact_match", "first_token_correct", "n_answer_tokens"]])
    assert kept["first_token_prob"].to_numpy() == pytest.approx(full["first_token_prob"].to_numpy(), rel=1e-5)
