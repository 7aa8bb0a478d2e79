"""The report of a run diagnosis reads its numbers from the summary and says plainly when no layer helps."""

import pandas as pd

from spurious_diag.probes.run_diagnosis import RunDiagnosis, summarize_run
from spurious_diag.report.run_diagnosis import run_diagnosis_markdown


def _diagnosis(single, bottom):
    """A two-block run (layers −1..2) whose dip is step 10, with these restored fractions per layer."""
    rows = []
    for step, acc_step in ((10, 0.1), (20, 0.3)):
        for arm, values in (("single", single), ("bottom", bottom)):
            for layer, restored in zip((-1, 0, 1, 2), values):
                rows.append({"step": step, "arm": arm, "layer": layer, "acc": acc_step + restored * (0.9 - acc_step),
                             "restored": restored, "acc_step": acc_step, "acc_before": 0.9, "n_tensors": 1})
    frames = {"forgetting_map": pd.DataFrame(rows)}
    settings = {"inputs": {"before": "b", "run_dir": "r", "base": None}, "steps": [10, 20], "every": 1,
                "split": {"held_out_records": 40}}
    return RunDiagnosis(frames, summarize_run(frames, 0.9, num_layers=2), settings, {})


def test_the_layer_that_restores_most_at_the_dip_is_named():
    d = _diagnosis(single=[0.1, 0.7, 0.2, 0.0], bottom=[0.1, 0.8, 0.9, 1.0])
    assert d.summary["dip_step"] == 10 and d.summary["most_restoring_layer"] == 0
    report = run_diagnosis_markdown(d, {})
    assert "reverting **block 0** alone restores the most: 0.700 of the loss" in report
    assert "through block 0 restores at least half" in report


def test_no_layer_restoring_anything_is_said_so():
    report = run_diagnosis_markdown(_diagnosis(single=[0.0, 0.02, 0.0, 0.0], bottom=[0.0, 0.0, 0.3, 1.0]), {})
    assert "no layer alone restores more than 0.020 of the loss" in report
    assert "reverting **" not in report and "through head restores at least half" in report
