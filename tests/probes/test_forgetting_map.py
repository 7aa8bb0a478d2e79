"""The forgetting map (layer × step), the probe map and the recovery curve on tiny Biography Llamas.

The scorer here is continuous (mean probability of the first answer token), so the identities are
checked on a quantity that moves with every weight, not on exact matches that are all zero for a
random model.
"""

import math

import pandas as pd
import pytest
import torch

from spurious_diag.errors import MismatchError, UsageError
from spurious_diag.io.layer_map import parse_param_name
from spurious_diag.probes.forgetting_map import (FORGETTING_MAP_COLUMNS, PROBE_MAP_COLUMNS, forgetting_map,
                                                 forgetting_map_at, layer_units, probe_map, revert_layers)
from spurious_diag.probes.options import RecoverySettings
from spurious_diag.probes.recovery_curve import RECOVERY_BY_STEP_COLUMNS, recovery_by_step
from spurious_diag.probes.run_steps import load_step
from spurious_diag.training.evaluate import score_records

LAYERS = 2


@pytest.fixture(scope="module")
def records(scenario):
    return [r.as_json() if hasattr(r, "as_json") else r for r in scenario.qa("task0_test")[:48]]


def _scorer(tokenizer, records):
    def score(model):
        return float(score_records(model, tokenizer, records)["first_token_prob"].mean())
    return score


def _closeness(before, tokenizer, records):
    """A score that is highest exactly at ``before`` (minus the mean distance of the first-token
    probabilities to its own), so every moved model has something to restore."""
    def probs(model):
        return torch.tensor(score_records(model, tokenizer, records)["first_token_prob"].to_numpy())

    reference = probs(before)

    def score(model):
        return -float((probs(model) - reference).abs().mean())
    return score


def _moved(model, seed, scale=0.05, layers=None):
    """A copy of ``model`` with every tensor (or those of ``layers``) moved by seeded noise."""
    import copy

    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if layers is None or parse_param_name(name, LAYERS).layer in layers:
                p.add_(scale * torch.randn(p.shape, generator=g))
    return out


@pytest.fixture
def run(make_tiny_llama, tmp_path):
    """Before (a tiny Llama) and a run of three checkpoints saved as checkpoint-N folders."""
    before = make_tiny_llama(seed=0, num_layers=LAYERS).eval()
    steps = []
    for step, seed in ((0, None), (10, 1), (20, 2)):
        model = before if seed is None else _moved(before, seed, scale=0.02 * seed)
        path = tmp_path / f"checkpoint-{step}"
        model.save_pretrained(path)
        steps.append((step, str(path)))
    return before, steps


def test_layer_units_span_embeddings_to_head():
    assert layer_units(4) == [-1, 0, 1, 2, 3, 4]
    with pytest.raises(UsageError):
        layer_units(0)


def test_reverting_every_layer_gives_exactly_the_score_before(run, make_tiny_llama, tokenizer, records):
    before, steps = run
    score = _closeness(before, tokenizer, records)
    acc_before = score(before)
    assert acc_before == 0.0
    work = make_tiny_llama(seed=7, num_layers=LAYERS).eval()
    frame = forgetting_map(work, before.state_dict(), steps, score, acc_before=acc_before, min_gap=0.0,
                           progress=False)
    assert list(frame.columns) == FORGETTING_MAP_COLUMNS
    deepest = frame[(frame["arm"] == "bottom") & (frame["layer"] == LAYERS)]
    assert len(deepest) == len(steps)
    assert (deepest["acc"] == acc_before).all()  # exactly, not approximately
    moved = deepest[deepest["step"] > 0]
    assert (moved["restored"] == 1.0).all()
    assert (deepest["n_tensors"] == len(list(before.parameters()))).all()


def test_reverting_nothing_gives_the_score_at_the_step(run, make_tiny_llama, tokenizer, records):
    from transformers import LlamaForCausalLM

    before, steps = run
    score = _scorer(tokenizer, records)
    work = make_tiny_llama(seed=7, num_layers=LAYERS).eval()
    frame = forgetting_map(work, before.state_dict(), steps, score, acc_before=score(before), progress=False)
    for step, path in steps:
        direct = score(LlamaForCausalLM.from_pretrained(path).eval())
        assert (frame.loc[frame["step"] == step, "acc_step"] == direct).all()
    load_step(work, steps[-1][1])
    assert revert_layers(work, before.state_dict(), []) == []
    assert score(work) == frame.loc[frame["step"] == steps[-1][0], "acc_step"].iloc[0]


def test_a_change_planted_in_one_block_is_restored_by_that_block_alone(make_tiny_llama, tokenizer, records):
    before = make_tiny_llama(seed=0, num_layers=LAYERS).eval()
    after = _moved(before, seed=3, scale=0.3, layers={1})
    score = _closeness(before, tokenizer, records)
    acc_before, acc_after = score(before), score(after)
    assert acc_before != acc_after  # the plant moved the score (checked, not assumed)
    current = {n: t.clone() for n, t in after.state_dict().items()}
    frame = forgetting_map_at(after, before.state_dict(), current, score, step=5, acc_before=acc_before,
                              min_gap=0.0)
    single = frame[frame["arm"] == "single"].set_index("layer")
    assert single.loc[1, "acc"] == acc_before and single.loc[1, "restored"] == 1.0
    for layer in (-1, 0, LAYERS):
        assert single.loc[layer, "acc"] == acc_after and single.loc[layer, "restored"] == 0.0
    bottom = frame[frame["arm"] == "bottom"].set_index("layer")
    assert bottom.loc[0, "acc"] == acc_after and bottom.loc[1, "acc"] == acc_before
    # the model holds its own weights again afterwards, bit for bit
    for name, tensor in after.state_dict().items():
        assert torch.equal(tensor, current[name]), name


def test_a_subset_of_layers_gives_the_same_rows(make_tiny_llama, tokenizer, records):
    before = make_tiny_llama(seed=0, num_layers=LAYERS).eval()
    after = _moved(before, seed=6, scale=0.2)
    score = _closeness(before, tokenizer, records)
    current = {n: t.clone() for n, t in after.state_dict().items()}
    full = forgetting_map_at(after, before.state_dict(), current, score, step=1, acc_before=0.0, min_gap=0.0)
    part = forgetting_map_at(after, before.state_dict(), current, score, step=1, acc_before=0.0, min_gap=0.0,
                             layers=[0, LAYERS])
    assert sorted(part["layer"].unique()) == [0, LAYERS]
    # the bottom row through block 0 still reverts the embeddings too: it equals the full map's row
    merged = part.merge(full, on=["arm", "layer"], suffixes=("", "_full"))
    assert len(merged) == len(part) and (merged["acc"] == merged["acc_full"]).all()
    with pytest.raises(UsageError, match="outside"):
        forgetting_map_at(after, before.state_dict(), current, score, step=1, acc_before=0.0, layers=[LAYERS + 1])


def test_restored_is_nan_where_nothing_was_forgotten(make_tiny_llama, tokenizer, records):
    before = make_tiny_llama(seed=0, num_layers=LAYERS).eval()
    score = _scorer(tokenizer, records)
    acc = score(before)
    frame = forgetting_map_at(before, before.state_dict(), before.state_dict(), score, step=0, acc_before=acc)
    assert frame["restored"].isna().all() and (frame["acc"] == acc).all()


def test_fraction_by_hand(make_tiny_llama, tokenizer, records):
    before = make_tiny_llama(seed=0, num_layers=LAYERS).eval()
    after = _moved(before, seed=4, scale=0.2)
    score = _closeness(before, tokenizer, records)
    acc_before = score(before)
    frame = forgetting_map_at(after, before.state_dict(), {n: t.clone() for n, t in after.state_dict().items()},
                              score, step=1, acc_before=acc_before, min_gap=0.0)
    for row in frame.itertuples():
        assert row.restored == pytest.approx((row.acc - row.acc_step) / (acc_before - row.acc_step), rel=1e-12)


def test_tied_embeddings_revert_the_head_with_them(tiny_llama):
    before = tiny_llama(2, seed=0, tie=True)
    after = _moved(before, seed=5, scale=0.1)
    names = revert_layers(after, before.state_dict(), [-1])
    assert len(names) == 1  # one shared tensor
    assert torch.equal(after.lm_head.weight, before.lm_head.weight)


def test_bad_layers_and_mismatched_sources_are_refused(make_tiny_llama):
    model = make_tiny_llama(seed=0, num_layers=LAYERS)
    with pytest.raises(UsageError, match="outside"):
        revert_layers(model, model.state_dict(), [LAYERS + 1])
    wider = make_tiny_llama(seed=0, num_layers=LAYERS, hidden_size=64)
    with pytest.raises(MismatchError, match="shape"):
        revert_layers(model, wider.state_dict(), [0])


@pytest.mark.slow
def test_probe_map_rows_follow_the_forgetting_map_layers(run, make_tiny_llama, tokenizer, scenario):
    _, steps = run
    records = scenario.qa("task0_test")[:120]
    work = make_tiny_llama(seed=7, num_layers=LAYERS).eval()
    frame = probe_map(work, steps[:2], tokenizer, records, progress=False)
    assert list(frame.columns) == PROBE_MAP_COLUMNS
    # −1 the embedding output, l the output of block l: the head row has no hidden state of its own
    assert sorted(frame["layer"].unique()) == layer_units(LAYERS)[:-1]
    assert sorted(frame["step"].unique()) == [0, 10]
    assert frame["acc"].between(0, 1).all()


@pytest.mark.slow
def test_recovery_by_step_fractions_by_hand(run, make_tiny_llama, tokenizer, scenario):
    _, steps = run
    pool = scenario.qa("task0_train")[:40]
    test = scenario.qa("task0_test")[:24]
    work = make_tiny_llama(seed=7, num_layers=LAYERS).eval()
    control = make_tiny_llama(seed=9, num_layers=LAYERS).eval()
    frame = recovery_by_step(work, steps, tokenizer, pool, test, acc_before=0.9, control=control,
                             settings=RecoverySettings(ns=(8, 16), steps=2, lr=1e-3), progress=False)
    assert list(frame.columns) == RECOVERY_BY_STEP_COLUMNS
    assert len(frame) == len(steps) * 2
    assert frame.groupby("n")["control_acc"].nunique().eq(1).all()  # the control is recovered once
    for row in frame.itertuples():
        gap = 0.9 - row.acc_step
        assert row.fraction == pytest.approx((row.acc - row.acc_step) / gap)
        assert row.control_fraction == pytest.approx((row.control_acc - row.acc_step) / gap)
    assert not math.isnan(frame["control_acc"].iloc[0])
    assert isinstance(frame, pd.DataFrame)
