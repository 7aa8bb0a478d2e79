"""``spurious-diag pretrain`` writes a loadable base model whose manifest records seed and data hash."""

import json

from spurious_diag.biography import build_scenario
from spurious_diag.biography.pretrain import load_base_model
from spurious_diag.cli import main


def test_pretrain_cli_small_run(tmp_path):
    out = tmp_path / "base"
    assert main(["-q", "--threads", "1", "pretrain", "--out", str(out), "--steps", "3", "--layers", "1",
                 "--hidden", "32"]) == 0
    manifest = json.loads((out / "biography_manifest.json").read_text())
    assert manifest["pretraining"]["steps"] == 3 and manifest["pretraining"]["seed"] == 0
    assert manifest["scenario"]["sha256"] == build_scenario(seed=0).sha256
    assert load_base_model(out).model.config.num_hidden_layers == 1
