"""Trainer checkpoint-N folders load as a chain in numeric step order."""

import pytest

from spurious_diag import load_chain
from spurious_diag.errors import CheckpointNotFoundError
from spurious_diag.io import is_chain_dir, list_chain


def test_numeric_order(make_model, tmp_path):
    for step in (10, 9, 100, 1):
        make_model("llama", seed=step).save_pretrained(tmp_path / f"checkpoint-{step}")
    (tmp_path / "runs").mkdir()  # Trainer's tensorboard dir is ignored
    assert [s for s, _ in list_chain(tmp_path)] == [1, 9, 10, 100]
    assert is_chain_dir(tmp_path)
    chain = load_chain(tmp_path)
    assert [c.path.rsplit("-", 1)[1] for c in chain] == ["1", "9", "10", "100"]
    name = "model.norm.weight"
    assert all(name in c for c in chain)


def test_no_checkpoints(tmp_path):
    with pytest.raises(CheckpointNotFoundError):
        load_chain(tmp_path)
    assert not is_chain_dir(tmp_path)
