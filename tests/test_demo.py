"""The main job: ``spurious-diag demo`` writes a report that recovers the planted geometry."""

import json

import pandas as pd

from spurious_diag.cli import main


def test_demo_recovers_planted_geometry(tmp_path):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out)]) == 0
    for name in ("updates.csv", "pairs.csv", "summary.json", "report.md"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    angles = {int(k): v["angle_mean_deg"].get("1-2") for k, v in summary["per_layer"].items()}
    assert all(abs(angles[layer] - 90) < 1 for layer in (-1, 0, 1))  # planted orthogonal
    assert all(angles[layer] < 1 for layer in (2, 3))  # planted shared subspace
    assert summary["rankings"]["by_orthogonality"]["1-2"][-2:] in ([2, 3], [3, 2])
    # numbers in the report equal those in the CSVs
    updates = pd.read_csv(out / "updates.csv")
    block0 = updates[(updates["layer"] == 0) & (updates["update"] == 1) & (updates["status"] == "ok")]["rms"].mean()
    assert f"| block 0 | {block0:.3g} |" in (out / "report.md").read_text()


def test_demo_refuses_foreign_non_empty_dir(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["-q", "demo", "--out", str(out)]) == 7
    assert (out / "keep.txt").read_text() == "x"
