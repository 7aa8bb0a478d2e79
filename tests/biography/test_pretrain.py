import dataclasses
import json

import pytest
import torch

from spurious_diag.biography.defaults import PRETRAINING, ModelShape
from spurious_diag.biography.pretrain import MANIFEST_NAME, load_base_model, pretrain_base_model, save_base_model
from spurious_diag.errors import CheckpointNotFoundError, InvalidDataError, OutputDirError


@pytest.fixture(scope="module")
def tiny_base(small_scenario):
    return pretrain_base_model(small_scenario, dataclasses.replace(PRETRAINING, steps=3, batch_size=4, warmup_steps=1),
                               seed=0, shape=ModelShape(num_layers=1, hidden_size=32))


def test_manifest_records_data_and_run(tiny_base, small_scenario):
    manifest = tiny_base.manifest
    assert manifest["scenario"]["sha256"] == small_scenario.sha256
    assert manifest["pretraining"]["steps"] == 3 and manifest["pretraining"]["final_loss"] > 0
    assert manifest["model"]["num_layers"] == 1 and manifest["model"]["tie_word_embeddings"] is False
    assert "git" not in json.dumps(manifest)


def test_save_and_load_round_trip(tiny_base, small_scenario, tmp_path):
    out = save_base_model(tiny_base, tmp_path / "base")
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json", MANIFEST_NAME}
    loaded = load_base_model(out)
    assert loaded.manifest == tiny_base.manifest
    assert loaded.scenario().sha256 == small_scenario.sha256
    ids = torch.tensor([loaded.tokenizer(small_scenario.pretraining_texts()[0]).input_ids])
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, tiny_base.model(ids).logits)
    with pytest.raises(OutputDirError):
        save_base_model(tiny_base, out)


def test_load_rejects_other_directories(tmp_path):
    with pytest.raises(CheckpointNotFoundError):
        load_base_model(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"kind": "something else"}')
    with pytest.raises(InvalidDataError):
        load_base_model(tmp_path)
