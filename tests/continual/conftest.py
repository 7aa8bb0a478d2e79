"""Fixtures of the sequential-runner tests: a tiny scenario, its tokenizer, tiny Llamas, two tasks."""

from __future__ import annotations

import pytest
import torch

from spurious_diag.biography import ScenarioSizes, build_scenario
from spurious_diag.continual.tasks import Task


@pytest.fixture(autouse=True)
def _every_test_here_on_one_thread(one_thread):
    """Tiny models run fastest on one thread (``one_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_data():
    return build_scenario(seed=5, sizes=ScenarioSizes(8, 2, 3, 6), bios_per_person=1)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_data):
    from spurious_diag.biography.tokenizer import build_tokenizer

    return build_tokenizer(tiny_data.corpus_texts())


def _make_llama(tokenizer, seed: int = 0, num_layers: int = 2):
    from spurious_diag.biography.model import biography_config, build_model

    return build_model(biography_config(tokenizer, num_layers=num_layers, hidden_size=32, num_heads=4), seed=seed)


@pytest.fixture
def make_llama(tiny_tokenizer):
    """``make(seed=0, num_layers=2)``: a tiny random Biography Llama (hidden 32)."""
    return lambda seed=0, num_layers=2: _make_llama(tiny_tokenizer, seed, num_layers)


@pytest.fixture(scope="session")
def task0_state(tiny_tokenizer, tiny_data):
    """State dict of a tiny Llama after Task 0 (12 steps), trained once per session."""
    from spurious_diag.continual.methods import Method
    from spurious_diag.continual.runner import SequenceOptions, run_sequence
    from spurious_diag.continual.tasks import EvalSchedule
    from spurious_diag.training.settings import TrainSettings

    torch.set_num_threads(1)
    model = _make_llama(tiny_tokenizer)
    run_sequence(model, tiny_tokenizer, _two_tasks(tiny_data), Method.seq(), TrainSettings(steps=12, lr=3e-3, batch_size=8),
                 seed=0, options=SequenceOptions(schedule=EvalSchedule(dense_every=6, dense_until=6, sparse_every=6),
                                                 last_task=0))
    return {name: t.clone() for name, t in model.state_dict().items()}


@pytest.fixture
def after_task0(tiny_tokenizer, task0_state):
    """``make()``: a fresh tiny Llama holding the weights at the end of Task 0."""

    def make():
        model = _make_llama(tiny_tokenizer)
        model.load_state_dict(task0_state)
        return model

    return make


def _two_tasks(tiny_data) -> list[Task]:
    return [
        Task("task0", tiny_data.qa("task0_train"), {"test": tiny_data.qa("task0_test"),
                                                     "val": tiny_data.qa("task0_val")}),
        Task("task1", tiny_data.qa("task1"), {"train": tiny_data.qa("task1")}),
    ]


@pytest.fixture
def two_tasks(tiny_data) -> list[Task]:
    """Task 0 (48 QA records, test/val sets) and Task 1 (36 QA records about new people)."""
    return _two_tasks(tiny_data)
