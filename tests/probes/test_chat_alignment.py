"""Chat alignment scorer: a tiny Llama taught three chat answers, and the real SmolLM2 (slow)."""

from __future__ import annotations

import pytest
import torch

from spurious_diag.errors import InvalidDataError
from spurious_diag.probes.chat_alignment import ChatQuestion, chat_alignment, chat_prompt

TEMPLATE = ("{% for m in messages %}{{ m['role'] + ' : ' + m['content'] + ' \n ' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'assistant :' }}{% endif %}")
TAUGHT = {"capital of France ?": "Paris", "capital of Japan ?": "it is Tokyo", "capital of Italy ?": "Rome"}
ROUND_STEPS, ROUNDS = 20, 50  # the taught model trains until it has memorized TAUGHT, at most 1000 steps
MARGIN = 1.0  # every answer token and <eos> must lead the runner-up logit by this much (robust to padding rounding)


@torch.no_grad()
def _answer_margin(model, x, answer_mask) -> float:
    """Smallest lead of the target logit over the best other logit at every answer and <eos> position.

    Positive means every taught answer token and the closing <eos> is the argmax under teacher forcing,
    which is what greedy decoding produces from the prompt (rows are right-padded; the model is causal)."""
    logits = model(input_ids=x).logits[:, :-1].float()
    targets = x[:, 1:]
    mask = answer_mask[:, 1:]
    target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    others = logits.scatter(-1, targets.unsqueeze(-1), float("-inf")).amax(-1)
    return float((target_logit - others)[mask].min())


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
    prompts = [tokenizer(chat_prompt(tokenizer, q), add_special_tokens=False).input_ids for q in TAUGHT]
    sequences = [prompt + tokenizer(a, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
                 for prompt, a in zip(prompts, TAUGHT.values())]
    width = max(map(len, sequences))
    x = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids in sequences])
    labels = torch.tensor([ids + [-100] * (width - len(ids)) for ids in sequences])
    answer_mask = torch.tensor([[False] * len(prompt) + [True] * (len(ids) - len(prompt)) + [False] * (width - len(ids))
                                for prompt, ids in zip(prompts, sequences)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)  # 1e-2 oscillated: 40 to 260 steps over seeds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # How many steps memorize the answers depends on the CPU's floating-point path: train in rounds
        # until the outcome holds, within a generous bound, instead of assuming a fixed step count.
        for _ in range(ROUNDS):
            model.train()
            for _ in range(ROUND_STEPS):
                model(input_ids=x, labels=labels).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            margin = _answer_margin(model.eval(), x, answer_mask)
            if margin >= MARGIN:
                break
        else:
            pytest.fail(f"the taught model did not memorize {TAUGHT} + <eos> in {ROUNDS * ROUND_STEPS} steps "
                        f"(smallest logit margin of an answer token {margin:.3f}, needed {MARGIN})")
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
