"""EWC vs orthogonality: Fisher means by hand, the correlation against scipy, rows without an angle kept,
and the join against a real audit's pairs and a real Fisher of a tiny Biography Llama."""

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from spurious_diag.continual.ewc import FisherDiagonal, diagonal_fisher
from spurious_diag.errors import UsageError
from spurious_diag.probes.fisher_angle import (
    FISHER_ANGLE_COLUMNS,
    FISHER_COLUMNS,
    fisher_angle_correlation,
    fisher_angle_table,
    fisher_by_tensor,
)
from spurious_diag.updates import AuditOptions, audit


def _fisher():
    return {
        "model.embed_tokens.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
        "model.layers.1.self_attn.q_proj.weight": torch.tensor([[0.0, 0.5, 1.0]]),
        "model.norm.weight": torch.tensor([2.0, 2.0, 2.0, 6.0]),
        "lm_head.weight": torch.tensor([[1e-6, 3e-6]]),
    }


def test_fisher_by_tensor_against_hand_means():
    frame = fisher_by_tensor(_fisher(), num_layers=2)
    assert list(frame.columns) == FISHER_COLUMNS
    assert list(frame["name"]) == list(_fisher())
    assert frame["layer"].tolist() == [-1, 1, 2, 2] and str(frame["layer"].dtype) == "Int64"
    assert list(frame["module"]) == ["embed_tokens", "attn.q_proj", "norm.final", "lm_head"]
    assert list(frame["numel"]) == [4, 3, 4, 2]
    np.testing.assert_allclose(frame["fisher_mean"], [2.5, 0.5, 3.0, 2e-6], rtol=1e-7)
    term = FisherDiagonal(_fisher(), {}, "task0", 1)
    pd.testing.assert_frame_equal(fisher_by_tensor(term, num_layers=2), frame)
    assert fisher_by_tensor(_fisher())["layer"].isna().tolist() == [False, False, True, True]  # L unknown


def _table(fisher_mean, angle_deg, status="ok"):
    return pd.DataFrame({"fisher_mean": fisher_mean, "angle_deg": angle_deg, "status": status})


def test_correlation_matches_scipy_and_is_one_on_an_exact_line():
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=30)
    y = 40.0 - 3.0 * x + rng.normal(scale=2.0, size=30)
    got = fisher_angle_correlation(_table(x, y))
    want = stats.pearsonr(x, y)
    assert got["r"] == pytest.approx(want.statistic, abs=1e-12) and got["p"] == pytest.approx(want.pvalue, rel=1e-9)
    assert got["n"] == 30 and got["reason"] is None and got["r"] < -0.5
    exact = fisher_angle_correlation(_table([1.0, 2.0, 5.0, 7.0], [12.0, 14.0, 20.0, 24.0]))
    assert exact["r"] == pytest.approx(1.0, abs=1e-12) and exact["p"] < 1e-6


def test_correlation_is_nan_with_a_reason_when_undefined():
    few = fisher_angle_correlation(_table([1.0, 2.0], [3.0, 4.0]))
    assert math.isnan(few["r"]) and math.isnan(few["p"]) and few["n"] == 2 and "fewer than 3" in few["reason"]
    flat = fisher_angle_correlation(_table([1.0, 1.0, 1.0], [3.0, 4.0, 5.0]))
    assert math.isnan(flat["r"]) and "fisher_mean is constant" in flat["reason"]
    flat = fisher_angle_correlation(_table([1.0, 2.0, 3.0], [45.0, 45.0, 45.0]))
    assert math.isnan(flat["r"]) and "angle_deg is constant" in flat["reason"]


def _pairs():
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight",
             "model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
             "model.layers.1.mlp.up_proj.weight", "model.layers.2.mlp.up_proj.weight"]
    rows = [{"update_a": 1, "update_b": 2, "name": n, "part": "", "layer": int(n.split(".")[2]),
             "module": ".".join(n.split(".")[3:5]).replace("self_attn", "attn"),
             "angle_mean_deg": a, "status": s}
            for n, a, s in zip(names, [80.0, 70.0, np.nan, 50.0, 40.0, 30.0],
                               ["ok", "ok", "below noise floor in update 1", "ok", "ok", "ok"])]
    rows.append({**rows[0], "update_a": 0, "update_b": 1, "angle_mean_deg": 5.0})
    return pd.DataFrame(rows)


def test_rows_without_an_angle_or_a_fisher_are_kept_with_a_status_and_left_out():
    pairs = _pairs()
    names = list(pairs["name"][:5])  # no Fisher for the last tensor
    fisher = fisher_by_tensor({n: torch.full((2, 2), float(i + 1)) for i, n in enumerate(names)}, num_layers=3)
    table = fisher_angle_table(fisher, pairs, update_a=1, update_b=2)
    assert list(table.columns) == FISHER_ANGLE_COLUMNS and len(table) == 6
    assert list(table["name"]) == list(pairs["name"][:6])
    assert list(table["status"]) == ["ok", "ok", "no angle_mean_deg: below noise floor in update 1", "ok", "ok",
                                     "no Fisher for this tensor"]
    assert list(table["fisher_mean"][:5]) == [1.0, 2.0, 3.0, 4.0, 5.0] and math.isnan(table["fisher_mean"][5])
    assert table["layer"].tolist() == [0, 0, 1, 1, 1, 2] and table["module"][0] == "attn.q_proj"
    got = fisher_angle_correlation(table)
    want = stats.pearsonr([1.0, 2.0, 4.0, 5.0], [80.0, 70.0, 50.0, 40.0])
    assert got["n"] == 4 and got["r"] == pytest.approx(want.statistic, abs=1e-12)
    assert got["r"] == pytest.approx(-1.0, abs=1e-12)
    # pairs.csv read back: an empty part is NaN
    from_csv = fisher_angle_table(fisher, pairs.assign(part=np.nan), update_a=1, update_b=2)
    assert (from_csv["part"] == "").all()
    with pytest.raises(UsageError, match="pairs there"):
        fisher_angle_table(fisher, pairs, update_a=2, update_b=3)
    with pytest.raises(UsageError, match="paper_angle_mean_deg"):
        fisher_angle_table(fisher, pairs, update_a=1, update_b=2, angle="paper_angle_mean_deg")


def test_join_with_a_real_audit_and_a_real_fisher(make_tiny_llama, tokenizer, scenario):
    base = make_tiny_llama(seed=0)
    gen = torch.Generator().manual_seed(1)
    steps = [base]
    for _ in range(2):  # two low-rank steps, well above float32 rounding
        model = copy.deepcopy(steps[-1])
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 2:
                    p.add_(0.05 * torch.randn(p.shape[0], 2, generator=gen) @ torch.randn(2, p.shape[1], generator=gen))
        steps.append(model)
    pairs = audit(steps, AuditOptions(rank=2), progress=False).pairs
    fisher = diagonal_fisher(base, tokenizer, scenario.qa("task0_train")[:6], source="task0")
    frame = fisher_by_tensor(fisher.fisher, num_layers=2)
    table = fisher_angle_table(frame, pairs, update_a=int(pairs["update_a"].min()), update_b=int(pairs["update_b"].max()))
    two_d = [n for n, p in base.named_parameters() if p.ndim == 2]
    assert sorted(table["name"]) == sorted(two_d) and (table["status"] == "ok").all()
    by_name = frame.set_index("name")
    np.testing.assert_allclose(table["fisher_mean"], [by_name.at[n, "fisher_mean"] for n in table["name"]])
    np.testing.assert_allclose(table["fisher_mean"], [float(fisher.fisher[n].double().mean()) for n in table["name"]])
    corr = fisher_angle_correlation(table)
    assert corr["n"] == len(two_d) and -1.0 <= corr["r"] <= 1.0
