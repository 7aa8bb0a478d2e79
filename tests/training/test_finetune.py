"""``spurious-diag train`` end to end on the shipped Biography base model and a 20-line JSONL."""

import json

import pandas as pd
import pytest

from spurious_diag import audit, load_checkpoint
from spurious_diag.biography.pretrain import shipped_base_dir
from spurious_diag.cli import main
from spurious_diag.freeze import verify_frozen
from tests.conftest import tree_digest


@pytest.fixture
def jsonl(tmp_path):
    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.scenario import ScenarioSizes

    data = build_scenario(seed=0, sizes=ScenarioSizes(200, 40, 160, 200))
    records = [{"prompt": r.prompt, "completion": r.completion} for r in data.qa("task1")[:20]]
    path = tmp_path / "train data.jsonl"  # a space in the name on purpose
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_train_freezes_and_output_is_auditable(jsonl, tmp_path, capsys):
    base = shipped_base_dir()
    before = tree_digest(base)
    out = tmp_path / "out"
    code = main(["-q", "--threads", "1", "train", "--model", str(base), "--data", str(jsonl), "--eval", str(jsonl),
                 "--out", str(out), "--freeze-layers", "1", "--steps", "6", "--lr", "1e-3", "--batch-size", "4",
                 "--eval-every", "3", "--weight-decay", "0.1"])
    assert code == 0, capsys.readouterr().err
    assert tree_digest(base) == before
    report = json.loads((out / "freeze_report.json").read_text())
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["frozen_bit_identical"] is True
    assert 0 < report["trainable_fraction"] < 1
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["step"]) == [0, 3, 6]
    # frozen tensors bit-identical on disk; the rest trained
    check = verify_frozen(base, out, report["frozen"])
    assert check.ok and len(check.identical) == len(report["frozen"]) and check.trainable_changed
    # and the output is auditable against the start
    res = audit([str(base), str(out)], progress=False)
    frozen_rows = res.updates[res.updates["name"].isin(report["frozen"])]
    assert len(frozen_rows) and (frozen_rows["fro"] == 0).all()
    assert (res.updates[~res.updates["name"].isin(report["frozen"])]["fro"] > 0).any()
    assert load_checkpoint(out).num_layers == 4


def test_train_early_stop_and_checkpoints(jsonl, tmp_path):
    # How many steps memorize half of the 20 records depends on the CPU's floating-point path: the budget
    # grows (within a bound) until some evaluation reaches the target; then training must have stopped there.
    for budget in (60, 120, 240):
        out = tmp_path / f"out-{budget}"
        code = main(["-q", "--threads", "1", "train", "--model", str(shipped_base_dir()), "--data", str(jsonl),
                     "--eval", str(jsonl), "--out", str(out), "--steps", str(budget), "--lr", "3e-3",
                     "--batch-size", "8", "--eval-every", "5", "--early-stop-at", "0.5", "--save-every", "5"])
        assert code == 0
        metrics = pd.read_csv(out / "metrics.csv")
        if (metrics.loc[metrics["step"] < budget, "exact_match"] >= 0.5).any():
            break
    else:
        pytest.fail(f"precondition: no evaluation before the last step reached exact match 0.5 within {budget} steps")
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] < budget and metrics["exact_match"].iloc[-1] >= 0.5
    assert (metrics["exact_match"].iloc[:-1] < 0.5).all()  # stopped at the first evaluation reaching it
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*"))
    assert steps and steps[0] == 5
    trajectory = audit([str(out / "checkpoints")], progress=False)
    assert trajectory.summary["counts"]["update_rows"] > 0


@pytest.mark.parametrize("content,reason", [
    ('{"prompt": "a"}\n', "no 'completion'"),
    ('{"prompt": "a", "completion": "  "}\n', "empty completion"),
    ('not json\n', "not valid JSON"),
    (b'{"prompt": "\xff", "completion": "x"}\n', "not UTF-8"),
])
def test_bad_jsonl_is_one_line_error(tmp_path, content, reason, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = main(["train", "--model", str(shipped_base_dir()), "--data", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 6 and len(err) == 1 and reason in err[0] and str(path) in err[0] and "line 1" in err[0]


def test_report_to_tensorboard_beside_metrics_csv(jsonl, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "out"
    code = main(["-q", "--threads", "1", "train", "--model", str(shipped_base_dir()), "--data", str(jsonl), "--eval",
                 str(jsonl), "--out", str(out), "--steps", "4", "--batch-size", "4", "--report-to", "tensorboard"])
    assert code == 0, capsys.readouterr().err
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = [p for p in (out / "tensorboard").rglob("events.out.tfevents.*")]
    assert events
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    losses = accumulator.Scalars("train/loss")
    summary = __import__("json").loads((out / "train_summary.json").read_text())
    assert [e.step for e in losses] == [4] and losses[0].value == pytest.approx(summary["final_loss"], rel=1e-5)
    assert list(pd.read_csv(out / "metrics.csv")["step"]) == [0, 4]  # the package's own record stays
    assert "TENSORBOARD_LOGGING_DIR" not in __import__("os").environ  # restored after the run


def test_report_to_a_tracker_that_is_not_installed_is_one_line(jsonl, tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    code = main(["train", "--model", str(shipped_base_dir()), "--data", str(jsonl), "--out", str(tmp_path / "o"),
                 "--steps", "1", "--report-to", "wandb"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install wandb" in err[0]
    assert not (tmp_path / "o").exists()
