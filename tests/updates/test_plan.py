"""Which updates a list of checkpoints defines, and which pairs of them an audit compares."""

import itertools

import pytest

from spurious_diag.errors import UsageError
from spurious_diag.io.adapter import LoraAdapter
from spurious_diag.updates.plan import UpdatePlan, needed_checkpoints, plan_pairs, plan_updates


def _adapter(path: str = "adapter") -> LoraAdapter:
    return LoraAdapter(path, None, {}, {}, [])  # planning looks at the kind of source only


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_pair_schemes_against_their_definitions(n):
    ids = range(1, n + 1)
    assert plan_pairs(n, "all") == list(itertools.combinations(ids, 2))
    assert plan_pairs(n, "consecutive") == [(a, a + 1) for a in ids if a < n]
    assert set(plan_pairs(n, "trajectory")) == {(a, a + 1) for a in ids if a < n} | {(1, b) for b in ids if b > 1}
    assert all(a < b for a, b in plan_pairs(n, "trajectory"))


def test_unknown_pair_scheme_is_a_usage_error():
    with pytest.raises(UsageError, match="pairs must be one of"):
        plan_pairs(3, "every")


def test_chain_and_base_updates():
    sources = ["c0", "c1", "c2"]
    assert plan_updates(sources) == [UpdatePlan(1, 0, 1), UpdatePlan(2, 1, 2)]
    assert plan_updates(sources, base=True) == [UpdatePlan(1, 0, 1), UpdatePlan(2, 0, 2)]


def test_an_adapter_is_an_update_from_ckpt0_and_the_chain_skips_it():
    plans = plan_updates(["base", _adapter(), "full"])
    assert plans == [UpdatePlan(1, 0, 1, factored=True), UpdatePlan(2, 0, 2)]  # CKPT_2 − CKPT_0: CKPT_1 holds no weights
    assert needed_checkpoints(plans) == [0, 2]


def test_planning_refuses_one_checkpoint_or_an_adapter_first():
    with pytest.raises(UsageError, match="at least two"):
        plan_updates(["only"])
    with pytest.raises(UsageError, match="CKPT_0 must be a full model"):
        plan_updates([_adapter(), "full"])
