"""Chat alignment scorer: a tiny Llama taught three chat answers, and the real SmolLM2 (slow)."""

from __future__ import annotations

import pytest
import torch

from spurious_diag.errors import InvalidDataError
from spurious_diag.probes.chat_alignment import ChatQuestion, chat_alignment, chat_prompt

TEMPLATE = ("{% for m in messages %}{{ m['role'] + ' : ' + m['content'] + ' \n ' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'assistant :' }}{% endif %}")
TAUGHT = {"capital of France ?": "Paris", "capital of Japan ?": "it is Tokyo", "capital of Italy ?": "Rome"}


@pytest.fixture(scope="module")
def taught():
    """A tiny Llama and word-level tokenizer trained until greedy decoding gives the TAUGHT answers + <eos>."""
    from transformers import LlamaForCausalLM

    from spurious_diag.biography.tokenizer import build_tokenizer
    from tests.conftest import tiny_config

    texts = [f"system user assistant : \n {q} {a}" for q, a in TAUGHT.items()] + ["Berlin what"]
    tokenizer = build_tokenizer(texts)
    tokenizer.chat_template = TEMPLATE
    config = tiny_config("llama", 2)
    config.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    sequences = [tokenizer(chat_prompt(tokenizer, q), add_special_tokens=False).input_ids
                 + tokenizer(a, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
                 for q, a in TAUGHT.items()]
    width = max(map(len, sequences))
    x = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in sequences])
    labels = torch.tensor([ids + [-100] * (width - len(ids)) for ids in sequences])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(120):
            model(input_ids=x, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    return model.eval(), tokenizer


def test_taught_answers_end_the_turn_and_are_correct(taught):
    model, tokenizer = taught
    questions = [ChatQuestion(q, a.split()[-1], id=i) for i, (q, a) in enumerate(TAUGHT.items())]
    result = chat_alignment(model, tokenizer, questions, max_new_tokens=8)
    assert result.per_question["response"].tolist() == list(TAUGHT.values())
    assert result.per_question["n_new_tokens"].tolist() == [1, 3, 1]
    assert (result.end_turn_rate, result.correct_rate, result.aligned_rate) == (1.0, 1.0, 1.0)


def test_wrong_answer_and_budget(taught):
    model, tokenizer = taught
    result = chat_alignment(model, tokenizer, [("capital of France ?", ["Berlin"]),
                                               ("capital of Japan ?", ["Tokyo"])], max_new_tokens=2)
    rows = result.per_question.set_index("id")
    assert rows.loc[0, "ended_turn"] and not rows.loc[0, "correct"]  # "Paris <eos>": ends, wrong answer
    assert not rows.loc[1, "ended_turn"] and not rows.loc[1, "correct"]  # "it is": cut before "Tokyo <eos>"
    assert result.aligned_rate == 0.0


def test_batched_equals_one_at_a_time(taught):
    model, tokenizer = taught
    questions = [(q, [a]) for q, a in TAUGHT.items()] + [("what Berlin ?", ["Berlin"])]
    batched = chat_alignment(model, tokenizer, questions, batch_size=4).per_question
    single = chat_alignment(model, tokenizer, questions, batch_size=1).per_question
    assert batched.equals(single)


def test_errors(taught):
    model, tokenizer = taught
    with pytest.raises(InvalidDataError, match="no chat questions"):
        chat_alignment(model, tokenizer, [])
    with pytest.raises(InvalidDataError, match="end_token"):
        chat_alignment(model, tokenizer, [("capital of France ?", ["Paris"])], end_token="<nope>")
    with pytest.raises(InvalidDataError, match="non-empty answers"):
        ChatQuestion("capital of France ?", ("",))
    bare = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<eos>", pad_token="<pad>")
    with pytest.raises(InvalidDataError, match="chat template"):
        chat_alignment(model, bare, [("capital of France ?", ["Paris"])])


@pytest.mark.slow
def test_smollm2_answers_a_capital_and_ends_its_turn(smollm2_hf_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_hf_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf_dir, dtype=torch.float32)
    result = chat_alignment(model, tokenizer, [("What is the capital of France?", ["Paris"]),
                                               ("What is the capital of Japan?", ["Tokyo"])])
    assert tokenizer.eos_token == "<|im_end|>"
    assert result.aligned_rate == 1.0, result.per_question[["response", "ended_turn"]]
