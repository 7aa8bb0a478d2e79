import copy
import math

import torch

from spurious_diag.probes.residual_shift import SHIFT_COLUMNS, residual_shift
from tests.probes.conftest import as_json


def test_a_model_against_itself_has_no_shift_and_a_changed_block_shows_from_its_layer_on(bio_base):
    base, tokenizer, scenario = bio_base
    records = as_json(scenario.qa("task0_test")[:60])
    same = residual_shift(base, base, tokenizer, records)
    assert list(same.columns) == SHIFT_COLUMNS and list(same["layer"]) == [0, 1, 2, 3, 4]
    assert (same["mean_shift_rel"] == 0).all()
    defined = same.dropna(subset=["cka"])  # layer 0: every QA prompt ends with the same token
    assert len(defined) == 4
    assert ((defined["cka"] - 1).abs() < 1e-9).all() and ((defined["cka_debiased"] - 1).abs() < 1e-9).all()
    assert (defined["pc1_angle_deg"] < 1e-3).all()
    assert math.isnan(same.loc[0, "pc1_angle_deg"])

    changed = copy.deepcopy(base)
    with torch.no_grad():
        for p in changed.model.layers[2].parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    shift = residual_shift(base, changed, tokenizer, records).set_index("layer")
    assert (shift.loc[[0, 1, 2], "mean_shift_rel"] == 0).all()  # blocks 0-1 untouched: layers 0-2 identical
    assert (shift.loc[[3, 4], "cka"] < 0.999).all() and (shift.loc[[3, 4], "mean_shift_rel"] > 0).all()
