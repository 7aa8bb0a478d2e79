"""LAMOL's pseudo-sample filter on crafted generations, and the pseudo-sample count."""

import pytest

from spurious_diag.continual.lamol import pseudo_sample_count, split_pseudo_sample
from spurious_diag.errors import UsageError


@pytest.mark.parametrize("text, expected", [
    ("What is the birth city of Ann Lee?\nAnswer: Paris",
     {"prompt": "What is the birth city of Ann Lee?\nAnswer:", "completion": " Paris"}),
    ("  Which company did Bo Ek work for?\nAnswer:  Acme Corp \n",
     {"prompt": "Which company did Bo Ek work for?\nAnswer:", "completion": " Acme Corp"}),
    ("What is the birth city of Ann Lee?", None),  # no marker
    ("Who?\nAnswer: Paris\nAnswer: Rome", None),  # two markers
    ("Who?\nAnswer: Paris. Answer: Rome", None),  # the marker's text twice
    ("\nAnswer: Paris", None),  # no question
    ("What is the birth city of Ann Lee?\nAnswer:   ", None),  # no answer
    ("", None),
])
def test_filter_keeps_exactly_one_answer_marker(text, expected):
    assert split_pseudo_sample(text) == expected


def test_a_custom_marker():
    assert split_pseudo_sample("Q: 2+2 A: 4", marker=" A:") == {"prompt": "Q: 2+2 A:", "completion": " 4"}
    with pytest.raises(UsageError):
        split_pseudo_sample("x", marker="")


def test_count_is_a_fifth_of_the_task_rounded_up():
    assert [pseudo_sample_count(n) for n in (0, 1, 5, 200, 201)] == [0, 1, 1, 40, 41]
    assert pseudo_sample_count(200, 0.0) == 0
    with pytest.raises(UsageError):
        pseudo_sample_count(10, 1.5)


def test_collator_adds_the_language_model_sequence_of_every_example():
    import torch

    from spurious_diag.continual.lamol import LamolCollator
    from spurious_diag.training.records import PaddingCollator

    features = [{"input_ids": [1, 5, 6, 2], "labels": [-100, -100, 6, 2]}, {"input_ids": [1, 7, 2], "labels": [-100, 7, 2]}]
    batch = LamolCollator(gen_token_id=2, pad_token_id=0)(features)
    plain = PaddingCollator(pad_token_id=0)(features)
    assert all(torch.equal(batch[k], plain[k]) for k in plain)  # the QA batch is untouched
    assert batch["extra_lm_input_ids"].tolist() == [[2, 1, 5, 6, 2], [2, 1, 7, 2, 0]]
    assert batch["extra_lm_labels"].tolist() == [[-100, 1, 5, 6, 2], [-100, 1, 7, 2, -100]]
    assert batch["extra_lm_attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]


def test_loss_is_lambda_times_the_language_model_loss(make_llama):
    import torch

    from spurious_diag.continual.lamol import LamolLoss

    model = make_llama()
    ids = torch.tensor([[2, 5, 6, 7, 2]])
    extras = {"lm_input_ids": ids, "lm_attention_mask": torch.ones_like(ids), "lm_labels": ids}
    with torch.no_grad():
        expected = 0.25 * float(model(input_ids=ids, labels=ids).loss)
        assert float(LamolLoss(0.25)(model, extras)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(UsageError):
        LamolLoss(-1.0)
    with pytest.raises(UsageError):
        LamolLoss(0.25)(model, {})


def test_generation_is_seeded_counted_and_leaves_the_global_rng_alone(make_llama, tiny_tokenizer):
    import torch

    from spurious_diag.continual.lamol import generate_pseudo_samples

    model = make_llama()
    state = torch.get_rng_state()
    kept, generated = generate_pseudo_samples(model, tiny_tokenizer, 5, seed=3, max_new_tokens=12, batch_size=2)
    assert generated == 5 and torch.equal(torch.get_rng_state(), state)
    assert kept == generate_pseudo_samples(model, tiny_tokenizer, 5, seed=3, max_new_tokens=12, batch_size=2)[0]
    assert all(r["prompt"].endswith("\nAnswer:") and r["completion"].strip() for r in kept)
    assert generate_pseudo_samples(model, tiny_tokenizer, 0, seed=3) == ([], 0)
