"""Fixtures of the Biography tests (the scenario, its tokenizer and tiny Llamas are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _every_test_here_on_one_thread(one_thread):
    """Tiny models run fastest on one thread (``one_thread`` in tests/conftest.py)."""
