"""Fixtures of the probe tests: one torch thread, tiny models, the shipped Biography base model,
and (slow, once per session) a spurious-forgetting and a real-forgetting model pair."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

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


@pytest.fixture(scope="session")
def forgetting_models(bio_base) -> ForgettingModels:
    """~40 s on one thread. Measured here: Task 0 held-out exact match 0.87; the spurious model
    0.08 on QA with biographies 0.89; the real model 0.03 on QA and 0.05 on biographies."""
    from spurious_diag.training import train_model

    torch.set_num_threads(1)
    base, tokenizer, scenario = bio_base
    task0 = copy.deepcopy(base)
    train_model(task0, tokenizer, scenario.qa("task0_train"), steps=300, lr=3e-4, batch_size=32, seed=0)
    spurious = copy.deepcopy(task0)
    train_model(spurious, tokenizer, scenario.qa("task1"), steps=40, lr=3e-4, batch_size=32, seed=0)
    real = copy.deepcopy(task0)
    people = scenario.qa("task0_train") + scenario.qa("task0_test")
    bios = scenario.probes("task0_train") + scenario.probes("task0_test")
    train_model(real, tokenizer, wrong_values(people, 0) + wrong_values(bios, 1), steps=60, lr=1e-3, batch_size=32,
                seed=0)
    return ForgettingModels(base, tokenizer, scenario, task0, spurious, real)
