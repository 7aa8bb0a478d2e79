"""The real-model benchmarks' ``--quick`` smoke tests: each runs end to end as its user runs it
(a subprocess), and its outputs agree with each other.

The numbers of a quick run mean nothing (a handful of people and steps); what is checked is that
every stage ran and that the printed and written tables are consistent with their sources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

pytestmark = pytest.mark.slow


def _run(script: str, out: Path, *extra: str, timeout: int = 900) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           # A fresh cache: a CI machine has none, and a test never writes into the developer's.
           "SPURIOUS_DIAG_BENCH_CACHE": str(out / "bench-cache")}
    completed = subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick", "--out", str(out / "run"),
                                *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def test_bench_depth_quick(tmp_path: Path) -> None:
    stdout = _run("bench_depth.py", tmp_path, "--jobs", "2")
    run = tmp_path / "run"
    depth = pd.read_csv(run / "depth.csv").set_index("blocks")
    assert sorted(depth.index) == [2, 3]
    for blocks, row in depth.iterrows():
        methods = pd.read_csv(run / f"L{blocks}" / "methods.csv")
        seq = methods[methods["method"] == "SEQ"].set_index("seed")
        freeze = methods[methods["method"] == "Freeze"].set_index("seed")
        # The chosen k is one of the candidates, and each gain is the paired mean over seeds.
        assert str(row["k"]) in str(row["candidates"]).split(",")
        assert row["stop_gain"] == pytest.approx((freeze["task0_stop"] - seq["task0_stop"]).mean(), abs=1e-12)
        assert row["dip_gain"] == pytest.approx((freeze["task0_dip"] - seq["task0_dip"]).mean(), abs=1e-12)
        assert row["task1_gap"] == pytest.approx((freeze["task1_stop"] - seq["task1_stop"]).mean(), abs=1e-12)
    assert "the best freeze depth per model depth" in stdout and "wall time" in stdout
    record = json.loads((run / "bench_depth.json").read_text())
    assert record["quick"] and record["recipe"]["train_past_stop"] is False


def test_bench_smollm2_biography_quick(tmp_path: Path) -> None:
    stdout = _run("bench_smollm2_biography.py", tmp_path, "--jobs", "2")
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("injected", "control"):
        assert 0.0 <= summary["task0"][key] <= 1.0
    # Every method's Task 1 curve is there, and SEQ's dip is one of its evaluated steps.
    curves = pd.read_csv(run / "curves.csv")
    assert {"SEQ", "Freeze(1)", "EWC(1e9)"} <= set(curves["method"])
    seq0 = curves[(curves["method"] == "SEQ") & (curves["seed"] == 0)]
    assert summary["diagnoses"]["dip"]["step"] in set(seq0["step"])
    # The forgetting map's deepest bottom revert puts every layer back: exactly the Task 0 score.
    fmap = pd.read_csv(run / "forgetting_map.csv")
    deepest = fmap[(fmap["arm"] == "bottom") & (fmap["layer"] == fmap["layer"].max())]
    assert len(deepest) == 2  # dip and end
    assert (deepest["acc"] == deepest["acc_before"]).all()
    diagnoses = summary["diagnoses"]
    for label in ("dip", "end"):
        assert diagnoses[label]["verdict"] in ("spurious", "real", "inconclusive")
    # One diagnosis serves both points when the dip is the end (a short run).
    labels = ["dip"] if diagnoses["end"]["step"] == diagnoses["dip"]["step"] else ["dip", "end"]
    for label in labels:
        assert (run / f"diagnosis_{label}" / "report.md").is_file()
    assert (run / "recovery_choice.csv").is_file()  # chosen once, for both diagnoses
    assert diagnoses["dip"]["recovery_setting"] == diagnoses["end"]["recovery_setting"]
    assert {"accuracy", "recovery", "format", "grafting"} <= set(diagnoses["dip"]["probe_seconds"])
    assert set(pd.read_csv(run / "diagnosis_dip" / "grafting.csv")["arm"]) <= {"bottom", "embeddings"}  # no top arm
    assert (run / "figures" / "task0_curve.png").is_file()
    assert "knowledge injection" in stdout and "no-injection control" in stdout and "wall time" in stdout


def test_bench_smollm2_tasks_quick_single_task(tmp_path: Path) -> None:
    stdout = _run("bench_smollm2_tasks.py", tmp_path, "--families", "S")
    table = pd.read_csv(tmp_path / "run" / "single_task.csv").set_index("model")
    assert {"base", "after S: SEQ", "after S: Freeze(1)", "after S: Freeze(2)"} <= set(table.index)
    for k in (1, 2):  # each difference row is its Freeze row minus SEQ's, column by column
        diff = table.loc[f"Freeze({k}) minus SEQ"]
        expected = table.loc[f"after S: Freeze({k})"] - table.loc["after S: SEQ"]
        pd.testing.assert_series_equal(diff, expected, check_names=False, atol=1e-12)
    assert "SMOKE TEST" in stdout and (tmp_path / "run" / "SMOKE_TEST.txt").is_file()
