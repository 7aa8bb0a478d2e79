"""Fixtures of the probe tests: one torch thread, tiny models, the shipped Biography base model,
and (slow, once per session) a spurious-forgetting and a real-forgetting model pair."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch


@pytest.fixture(autouse=True)
def _every_test_here_on_one_thread(one_thread: None) -> None:
    """Tiny models run fastest on one thread (``one_thread`` in tests/conftest.py)."""


def as_json(records: Any) -> list[dict[str, Any]]:
    """Biography QARecords as the JSONL dicts users pass (with attribute and person_id)."""
    return [{"prompt": r.prompt, "completion": r.completion, "attribute": r.attribute, "person_id": r.person_id}
            for r in records]


@pytest.fixture(scope="session")
def bio_base():
    """The shipped pretrained Biography base model (1.3M parameters, 4 blocks), its tokenizer and scenario."""
    torch.set_num_threads(1)
    from spurious_diag.biography.pretrain import load_base_model

    base = load_base_model()
    return base.model, base.tokenizer, base.scenario()


@pytest.fixture
def tiny_llama():
    """``make(num_layers=3, seed=0, tie=False)``: a random tiny Llama (hidden 32, vocab 101)."""
    from tests.conftest import tiny_config
    from transformers import LlamaForCausalLM

    def make(num_layers: int = 3, seed: int = 0, tie: bool = False):
        config = tiny_config("llama", num_layers)
        config.tie_word_embeddings = tie
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()

    return make


def wrong_values(records: Any, seed: int) -> list[dict[str, Any]]:
    """The same prompts with every value replaced by another person's value of that attribute."""
    rng = random.Random(seed)
    by_attribute: dict[str, list[Any]] = {}
    for r in records:
        by_attribute.setdefault(r.attribute, []).append(r)
    out = []
    for attribute, group in by_attribute.items():
        values = [r.completion for r in group]
        for r in group:
            choices = [v for v in values if v != r.completion]
            out.append({"prompt": r.prompt, "completion": rng.choice(choices), "attribute": attribute,
                        "person_id": r.person_id})
    return out


@dataclass
class ForgettingModels:
    """``task0``: the base after Task 0 QA; ``spurious``: task0 after a short Task 1 (SEQ at the dip:
    alignment lost, biographies intact); ``real``: task0 fine-tuned on WRONG values of the Task 0
    people in both formats (the facts overwritten)."""

    base: Any
    tokenizer: Any
    scenario: Any
    task0: Any
    spurious: Any
    real: Any


def _exact_match(model, tokenizer, scenario) -> tuple[float, float]:
    """Held-out (Task 0 test) exact match in the task format (QA + <eos>) and the pretraining format."""
    from spurious_diag.training.evaluate import evaluate_records

    qa = evaluate_records(model, tokenizer, scenario.qa("task0_test")).exact_match
    bios = evaluate_records(model, tokenizer, scenario.probes("task0_test"), append_eos=False).exact_match
    return qa, bios


def _train_until(model, tokenizer, scenario, records, *, name: str, steps: list[int], lr: float,
                 done: Callable[[float, float], bool]) -> tuple[float, float]:
    """Train ``model`` in rounds of ``steps`` until ``done(qa, bios)`` holds; fail the fixture if it never does.

    A fixed step count reaches these outcomes on one CPU and not necessarily on another (the floating-point
    path differs), so the outcome is checked, not assumed."""
    from spurious_diag.training import TrainSettings, train_model

    history = []
    for round_, n in enumerate(steps):
        train_model(model, tokenizer, records, TrainSettings(steps=n, lr=lr, batch_size=32), seed=round_)
        qa, bios = _exact_match(model, tokenizer, scenario)
        history.append((sum(steps[:round_ + 1]), round(qa, 3), round(bios, 3)))
        if done(qa, bios):
            return qa, bios
    pytest.fail(f"precondition: the {name} model did not become what the known-answer tests need within "
                f"{sum(steps)} steps; (step, QA, biographies) exact match on Task 0 test people: {history}")


@pytest.fixture(scope="session")
def forgetting_models(bio_base) -> ForgettingModels:
    """~60 s on one thread. Measured here: Task 0 held-out exact match 0.87 (biographies 0.96); the spurious
    model 0.08 on QA with biographies 0.93; the real model 0.03 on QA and 0.03 on biographies. Each model is
    trained until it is what it claims to be (checked on the Task 0 test people, within a bound of steps)."""
    torch.set_num_threads(1)
    base, tokenizer, scenario = bio_base
    task0 = copy.deepcopy(base)
    qa, bios = _train_until(task0, tokenizer, scenario, scenario.qa("task0_train"), name="task0",
                            steps=[300] + [100] * 4, lr=3e-4, done=lambda qa, bios: qa >= 0.75)
    assert bios >= 0.85, f"precondition: Task 0 QA training damaged the biographies ({bios:.3f} < 0.85)"
    spurious = copy.deepcopy(task0)
    # SEQ at the dip: QA on the old people collapses; stop there, before Task 1 erodes the biographies.
    qa, bios = _train_until(spurious, tokenizer, scenario, scenario.qa("task1"), name="spurious",
                            steps=[40] + [20] * 4, lr=3e-4, done=lambda qa, bios: qa <= 0.2 or bios < 0.85)
    assert bios >= 0.85, (f"precondition: the spurious model's biographies are not intact ({bios:.3f} < 0.85 "
                          f"when its QA fell to {qa:.3f}): it is not a spurious-forgetting model")
    real = copy.deepcopy(task0)
    people = scenario.qa("task0_train") + scenario.qa("task0_test")
    bios_records = scenario.probes("task0_train") + scenario.probes("task0_test")
    _train_until(real, tokenizer, scenario, wrong_values(people, 0) + wrong_values(bios_records, 1), name="real",
                 steps=[60] + [20] * 5, lr=1e-3, done=lambda qa, bios: qa <= 0.1 and bios <= 0.2)
    return ForgettingModels(base, tokenizer, scenario, task0, spurious, real)
