"""Fixtures of the Biography tests: the default scenario, its tokenizer, tiny Llamas."""

from __future__ import annotations

import pytest

from spurious_diag.biography import BiographyData, ScenarioSizes, build_scenario


@pytest.fixture(autouse=True)
def _every_test_here_on_one_thread(one_thread):
    """Tiny models run fastest on one thread (``one_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def scenario() -> BiographyData:
    """The default scenario (seed 0, 200/40/160/200 people): the shipped base model's data."""
    return build_scenario(seed=0)


@pytest.fixture(scope="session")
def small_scenario() -> BiographyData:
    return build_scenario(seed=3, sizes=ScenarioSizes(6, 2, 4, 4), bios_per_person=3)


@pytest.fixture(scope="session")
def tokenizer(scenario):
    from spurious_diag.biography.tokenizer import build_tokenizer

    return build_tokenizer(scenario.corpus_texts())


@pytest.fixture
def make_tiny_llama(tokenizer):
    """``make(seed=0, num_layers=2, hidden_size=32)``: a tiny random Biography Llama."""
    from spurious_diag.biography.model import biography_config, build_model

    def make(seed: int = 0, num_layers: int = 2, hidden_size: int = 32):
        return build_model(biography_config(tokenizer, num_layers=num_layers, hidden_size=hidden_size, num_heads=4),
                           seed=seed)

    return make
