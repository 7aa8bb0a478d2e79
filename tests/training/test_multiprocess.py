"""``spurious-diag train`` under ``accelerate launch --num_processes 2`` on CPU (gloo), with freezing.

Full-batch steps (8 records: one process × 8, or two × 4 with gradients averaged by DDP) see the
same gradient, so both runs must reach the same weights up to float reduction order; every rank
checks its frozen tensors bit-identical.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from spurious_diag import load_checkpoint
from spurious_diag.biography.pretrain import shipped_base_dir
from spurious_diag.freeze import verify_frozen


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not installed")
def test_two_process_training_matches_single_process(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"What is the birth city of Person{i}?\nAnswer:",
                                        "completion": " Boston"}) + "\n" for i in range(8)))
    common = ["train", "--model", str(shipped_base_dir()), "--data", str(data), "--freeze-layers", "1",
              "--steps", "3", "--lr", "1e-3", "--weight-decay", "0.1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    single = subprocess.run([sys.executable, "-m", "spurious_diag", "--threads", "1", *common, "--batch-size", "8",
                             "--out", str(tmp_path / "one")], capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    multi = subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "-m", "spurious_diag",
                            "--threads", "1", *common, "--batch-size", "4", "--out", str(tmp_path / "two")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert "rank 0: 10 frozen tensors bit-identical" in multi.stderr
    assert "rank 1: 10 frozen tensors bit-identical" in multi.stderr
    one, two = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "two")
    assert set(one) == set(two)
    worst = max(float((one[n] - two[n]).abs().max()) for n in one)
    assert worst < 1e-5, worst
    report = json.loads((tmp_path / "two" / "freeze_report.json").read_text())
    assert verify_frozen(shipped_base_dir(), tmp_path / "two", report["frozen"]).ok
    assert any(not torch.equal(one[n], load_checkpoint(shipped_base_dir())[n]) for n in one)
