"""``spurious-diag train --deepspeed CONFIG`` on the CPU: DeepSpeed ZeRO-2 under torchrun with two gloo
ranks really trains (the Trainer wraps the model in a ``DeepSpeedEngine``), and the frozen tensors come
out bit-identical; the config is checked before any model is loaded."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spurious_diag.biography.pretrain import shipped_base_dir
from spurious_diag.errors import InvalidDataError, UsageError
from spurious_diag.training.deepspeed_config import read_deepspeed_config
from spurious_diag.training.settings import FinetuneOptions

ROOT = Path(__file__).resolve().parents[2]
ZERO2 = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto",
         "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}


def _write(path: Path, config) -> str:
    path.write_text(json.dumps(config) if not isinstance(config, str) else config)
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_config_is_read_and_checked(tmp_path):
    assert read_deepspeed_config(_write(tmp_path / "ok.json", ZERO2), batch_size=4, check_installed=False) == ZERO2
    fixed = {**ZERO2, "train_micro_batch_size_per_gpu": 4}
    assert read_deepspeed_config(_write(tmp_path / "fixed.json", fixed), batch_size=4, check_installed=False) == fixed
    with pytest.raises(UsageError, match="ZeRO stage 3 partitions the parameters") as err:
        read_deepspeed_config(_write(tmp_path / "z3.json", {"zero_optimization": {"stage": 3}}), batch_size=4)
    assert err.value.path == str(tmp_path / "z3.json")
    with pytest.raises(UsageError, match="batch size is 8"):
        read_deepspeed_config(_write(tmp_path / "mb.json", fixed), batch_size=8, check_installed=False)
    with pytest.raises(InvalidDataError, match="DeepSpeed config is not valid JSON"):
        read_deepspeed_config(_write(tmp_path / "bad.json", "{stage: 2"), batch_size=4)
    with pytest.raises(InvalidDataError, match="JSON object"):
        read_deepspeed_config(_write(tmp_path / "list.json", [1]), batch_size=4)
    with pytest.raises(InvalidDataError, match="must be an integer"):
        read_deepspeed_config(_write(tmp_path / "s.json", {"zero_optimization": {"stage": "two"}}), batch_size=4)
    with pytest.raises(InvalidDataError, match="no such DeepSpeed config"):
        read_deepspeed_config(str(tmp_path / "missing.json"), batch_size=4)
    with pytest.raises(UsageError, match="--save-every with --deepspeed"):
        FinetuneOptions(deepspeed="ds.json", save_every=5)


def test_a_zero3_config_exits_2_with_one_line_before_loading_anything(tmp_path, capsys):
    from spurious_diag.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Q:", "completion": " A"}) + "\n")
    config = _write(tmp_path / "z3.json", {"zero_optimization": {"stage": 3}})
    code = main(["train", "--model", str(shipped_base_dir()), "--data", str(data), "--out", str(tmp_path / "o"),
                 "--freeze-layers", "1", "--steps", "1", "--deepspeed", config])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ZeRO stage 3" in err[0] and "z3.json" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_zero2_on_two_cpu_ranks_trains_under_deepspeed_and_keeps_frozen_tensors_bit_identical(tmp_path):
    pytest.importorskip("deepspeed")  # in the test extra; absent only where someone left it out
    from safetensors.torch import load_file

    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.scenario import ScenarioSizes

    scenario = build_scenario(seed=0, sizes=ScenarioSizes(4, 1, 1, 2), bios_per_person=1)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": r.prompt, "completion": r.completion}) + "\n"
                            for r in scenario.qa("task0_train")))
    config = _write(tmp_path / "ds.json", ZERO2)
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(_free_port()), "-m", "spurious_diag", "-q", "train", "--model", str(shipped_base_dir()),
                           "--data", str(data), "--out", str(out), "--freeze-layers", "1", "--steps", "4",
                           "--batch-size", "2", "--lr", "1e-3", "--deepspeed", config],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["engine"] == "DeepSpeedEngine" and summary["world_size"] == 2
    assert summary["frozen_bit_identical"] is True and summary["steps"] == 4
    # Independently of the run's own check: the saved model against the base, tensor by tensor.
    before = load_file(os.path.join(shipped_base_dir(), "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    frozen = [n for n in before if n.startswith(("model.embed_tokens.", "model.layers.0."))]
    trained = [n for n in before if n.startswith("model.layers.1.") and n.endswith("weight")]
    assert frozen and trained
    assert all(torch.equal(before[n].view(torch.uint8), after[n].view(torch.uint8)) for n in frozen)
    assert any(not torch.equal(before[n], after[n]) for n in trained)
