"""Fixtures of the comparison tests: a tiny Biography base model saved to disk, and a short recipe."""

from __future__ import annotations

import dataclasses

import pytest

from spurious_diag.biography.recipe import BiographyRecipe


@pytest.fixture(autouse=True)
def _every_test_here_on_one_thread(one_thread):
    """Tiny models run fastest on one thread (``one_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_base_dir(small_scenario, tmp_path_factory):
    """A 2-block, hidden-32 base model pretrained for 20 steps on the small scenario, saved."""
    from spurious_diag.biography.defaults import ModelShape
    from spurious_diag.biography.pretrain import PRETRAINING, pretrain_base_model, save_base_model

    base = pretrain_base_model(small_scenario, dataclasses.replace(PRETRAINING, steps=20, batch_size=8, warmup_steps=1),
                               seed=0, shape=ModelShape(num_layers=2, hidden_size=32))
    return save_base_model(base, tmp_path_factory.mktemp("compare") / "base")


@pytest.fixture
def short_recipe() -> BiographyRecipe:
    """10 Task 0 steps, 20 per new task, evaluated every 5; the early-stop target is low enough to
    be reached sometimes (tests check the outcome before relying on it)."""
    return BiographyRecipe(task0_steps=10, task1_steps=20, batch_size=8, early_stop=0.3, dip_window=10,
                           dense_every=5, sparse_every=10, stop_check_every=5, checkpoint_every=5)
