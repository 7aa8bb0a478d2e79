"""``spurious-diag train --resume``: a run killed with SIGKILL continues to the same weights, bit for bit."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open

from spurious_diag.biography.pretrain import shipped_base_dir
from spurious_diag.cli import main
from spurious_diag.freeze import verify_frozen
from spurious_diag.training.checkpoints import STAGING_DIR, complete_checkpoints, last_checkpoint

SETTINGS = ["--freeze-layers", "1", "--lr", "1e-3", "--batch-size", "8", "--schedule", "cosine",
            "--warmup-steps", "3", "--weight-decay", "0.1"]


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.scenario import ScenarioSizes

    data = build_scenario(seed=0, sizes=ScenarioSizes(200, 40, 160, 200))
    records = [{"prompt": r.prompt, "completion": r.completion} for r in data.qa("task1")[:20]]
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return {name: f.get_tensor(name) for name in f.keys()}


def assert_bit_identical(a, b):
    one, two = _tensors(a), _tensors(b)
    assert set(one) == set(two) and one
    differ = [n for n in one if one[n].dtype != two[n].dtype
              or not torch.equal(one[n].view(torch.uint8), two[n].view(torch.uint8))]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def _train_args(jsonl, out, steps, save_every):
    return ["train", "--model", str(shipped_base_dir()), "--data", str(jsonl), "--eval", str(jsonl),
            "--eval-every", "5", "--out", str(out), "--steps", str(steps), "--save-every", str(save_every), *SETTINGS]


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_resume_is_bit_identical(jsonl, tmp_path):
    # 40 steps × 8 of 20 records: checkpoints fall mid-epoch too (3 batches per epoch).
    kill_at = random.Random(8).choice([4, 8, 12, 16, 20])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "spurious_diag", "-q", "--threads", "1"]
    ref, run = tmp_path / "reference", tmp_path / "killed"
    # The reference and the run to kill side by side: the test takes two process lifetimes, not three.
    reference = subprocess.Popen([*command, *_train_args(jsonl, ref, 40, 4)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([*command, *_train_args(jsonl, run, 40, 4)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / f"checkpoint-{kill_at}").exists() and victim.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (run / "model.safetensors").exists()
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-2000:]
    saved = complete_checkpoints(run / "checkpoints")
    assert saved and saved[-1][0] >= kill_at

    resumed = subprocess.run([*command, *_train_args(jsonl, run, 40, 4), "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 40 and summary["frozen_bit_identical"] is True
    assert summary["resumed_from"] == os.path.join("checkpoints", f"checkpoint-{saved[-1][0]}")
    assert_bit_identical(ref / "model.safetensors", run / "model.safetensors")
    assert (run / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()  # rows before the kill kept
    assert [s for s, _ in complete_checkpoints(run / "checkpoints")] == list(range(4, 41, 4))
    assert not (run / "checkpoints" / STAGING_DIR).exists()
    # frozen tensors checked against --model, the true start, not against the checkpoint
    report = json.loads((run / "freeze_report.json").read_text())
    assert verify_frozen(shipped_base_dir(), run, report["frozen"]).ok


def test_resume_skips_a_torn_checkpoint_and_a_torn_save(jsonl, tmp_path, capsys):
    ref, run = tmp_path / "reference", tmp_path / "torn"
    assert main(["-q", "--threads", "1", *_train_args(jsonl, ref, 6, 2)]) == 0
    shutil.copytree(ref / "checkpoints", run / "checkpoints")
    (run / "checkpoints" / "checkpoint-6" / "optimizer.pt").unlink()  # e.g. written by Trainer, killed mid-save
    (run / "checkpoints" / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')
    staged = run / "checkpoints" / STAGING_DIR / "checkpoint-8"
    staged.mkdir(parents=True)
    (staged / "model.safetensors").write_bytes(b"torn")
    assert last_checkpoint(run / "checkpoints").endswith("checkpoint-2")

    assert main(["-q", "--threads", "1", *_train_args(jsonl, run, 6, 2), "--resume"]) == 0, capsys.readouterr().err
    assert json.loads((run / "train_summary.json").read_text())["resumed_from"].endswith("checkpoint-2")
    assert_bit_identical(ref / "model.safetensors", run / "model.safetensors")
    assert (run / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()
    assert [s for s, _ in complete_checkpoints(run / "checkpoints")] == [2, 4, 6]

    # resuming a finished run trains nothing more and writes the same model again
    assert main(["-q", "--threads", "1", *_train_args(jsonl, run, 6, 2), "--resume"]) == 0
    assert json.loads((run / "train_summary.json").read_text())["resumed_from"].endswith("checkpoint-6")
    assert_bit_identical(ref / "model.safetensors", run / "model.safetensors")


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_resume_errors(jsonl, tmp_path, capsys):
    out = tmp_path / "out"
    # nothing there, or an output without checkpoints
    assert main(_train_args(jsonl, out, 2, 1) + ["--resume"]) == 3
    assert "nothing to resume from" in _one_line_error(capsys)
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"")
    assert main(_train_args(jsonl, out, 2, 1) + ["--resume"]) == 3
    assert "nothing to resume from" in _one_line_error(capsys)
    assert main(_train_args(jsonl, out, 2, 1) + ["--resume", "--overwrite"]) == 2
    assert "--overwrite" in _one_line_error(capsys)
    # without --resume a non-empty --out is still refused
    assert main(_train_args(jsonl, out, 2, 1)) == 7
    assert "not empty" in _one_line_error(capsys)

    assert main(["-q", "--threads", "1", *_train_args(jsonl, out, 2, 1), "--overwrite"]) == 0
    capsys.readouterr()
    # other settings than the run being continued
    assert main(_train_args(jsonl, out, 3, 1) + ["--resume"]) == 2
    line = _one_line_error(capsys)
    assert "differing" in line and "steps: 2 then, 3 now" in line
