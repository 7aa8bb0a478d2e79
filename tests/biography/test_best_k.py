"""The demo's freeze depth chosen on validation: eligibility by the early-stop target, ties to the smaller k."""

import pandas as pd

from spurious_diag.biography.demo import best_k_on_validation


def _sweep(rows):
    return pd.DataFrame([{"k": k, "stop_reached": reached, "task0_val_stop": val} for k, reached, val in rows])


def test_best_k_among_the_runs_that_reached_the_target():
    sweep = _sweep([(None, True, 0.1), (1, True, 0.4), (2, False, 0.9), (3, True, 0.3)])
    assert best_k_on_validation(sweep) == 1
    assert best_k_on_validation(_sweep([(1, False, 0.2), (2, False, 0.5)])) == 2
    assert best_k_on_validation(_sweep([(None, True, 0.1)])) is None


def test_a_rounding_tie_goes_to_the_smaller_k():
    # 0.1 + 0.2 = 0.30000000000000004 and 0.3: the same score apart from the last bit.
    assert best_k_on_validation(_sweep([(1, True, 0.3), (2, True, 0.1 + 0.2)])) == 1
