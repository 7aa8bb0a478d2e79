import math

import pandas as pd
import pytest
import torch

from spurious_diag.errors import InvalidDataError
from spurious_diag.probes.recovery import RecoverySettings, recovery_fraction, run_recovery
from tests.probes.conftest import as_json


def test_recovery_fraction_arithmetic():
    # DESIGN.md §5's pilot: 0.90 before, 0.21 at the dip, 0.54 after recovery with N = 100.
    assert recovery_fraction(0.54, 0.21, 0.90) == pytest.approx(0.33 / 0.69)
    assert recovery_fraction(0.90, 0.21, 0.90) == pytest.approx(1.0)
    assert recovery_fraction(0.21, 0.21, 0.90) == 0.0
    assert recovery_fraction(0.17, 0.21, 0.90) == pytest.approx(-0.04 / 0.69)  # the control can fall below
    assert math.isnan(recovery_fraction(0.5, 0.6, 0.6))  # nothing forgotten
    assert math.isnan(recovery_fraction(0.5, 0.7, 0.6))


def test_run_recovery_same_procedure_for_model_and_control(bio_base):
    base, tokenizer, scenario = bio_base
    pool = as_json(scenario.qa("task0_train")[:24])
    test = as_json(scenario.qa("task0_test")[:12])
    original = {n: t.clone() for n, t in base.state_dict().items()}
    settings = RecoverySettings(ns=(4, 8, 1000), steps=2, lr=1e-4, seed=3)
    result = run_recovery(base, tokenizer, pool, test, control=base, acc_before=0.9, settings=settings)
    table = result.table
    assert list(zip(table["n"], table["model"])) == [(0, "forgot"), (0, "control"), (4, "forgot"), (4, "control"),
                                                     (8, "forgot"), (8, "control")]
    assert result.skipped_ns == (1000,)
    trained = table[table["n"] > 0]
    assert set(trained["steps"]) == {2} and set(trained["lr"]) == {1e-4}
    # Same start, same examples, same seed: the control is the same model here, so the same result.
    for n in (4, 8):
        rows = trained[trained["n"] == n].set_index("model")
        assert rows.loc["forgot", "acc"] == rows.loc["control", "acc"]
    expected = (table["acc"] - result.acc_forgot) / (0.9 - result.acc_forgot)
    pd.testing.assert_series_equal(table["recovery_fraction"], expected, check_names=False)
    for name, tensor in base.state_dict().items():  # the input model was never trained
        assert torch.equal(tensor, original[name])


def test_recovery_refuses_overlapping_individuals(bio_base):
    base, tokenizer, scenario = bio_base
    records = as_json(scenario.qa("task0_test")[:12])
    with pytest.raises(InvalidDataError, match="share"):
        run_recovery(base, tokenizer, records, records, settings=RecoverySettings(ns=(2,), steps=1))
