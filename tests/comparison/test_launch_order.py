"""The order in which a comparison starts its ready units (no training: the plan alone)."""

from __future__ import annotations

from spurious_diag.comparison.config import CompareConfig
from spurious_diag.comparison.runner import _Plan, launch_order
from spurious_diag.comparison.spec import parse_methods
from spurious_diag.comparison.store import ComparisonStore


def _ready(methods: str, seeds: tuple[int, ...], done: set[str], tmp_path) -> list[str]:
    config = CompareConfig(methods=methods, seeds=seeds)
    plan = _Plan(config, parse_methods(methods), ComparisonStore(tmp_path / "out", config.to_dict(), overwrite=True))
    units = plan.units({key: {} for key in done})
    ready = [u for u in units if u.key not in done and all(d in done for d in u.deps)]
    return [u.key for u in sorted(ready, key=launch_order)]


def test_the_runs_a_choice_reads_start_before_the_independent_ones(tmp_path):
    """After Task 0: the Fisher and the selection seed's runs of SEQ and of each family chosen on
    validation come first; SEQ and a fixed-setting family on the other seeds after them."""
    order = _ready("SEQ,Freeze(1|6),EWC(1e6)", (0, 1), {"task0/plain"}, tmp_path)
    first = {"fisher", "run/seq/s0", "run/freeze-1/s0", "run/freeze-6/s0"}
    assert set(order[:4]) == first, order
    assert set(order[4:]) == {"run/seq/s1"}  # EWC waits for the Fisher
    # With the Fisher done, the fixed-setting EWC runs are ready, still behind the choice's runs.
    order = _ready("SEQ,Freeze(1|6),EWC(1e6)", (0, 1), {"task0/plain", "fisher"}, tmp_path)
    assert set(order[:3]) == first - {"fisher"}, order
    assert set(order[3:]) == {"run/seq/s1", "run/ewc-1e6/s0", "run/ewc-1e6/s1"}


def test_without_a_choice_the_family_order_holds(tmp_path):
    """Every family given one setting: nothing waits on a selection run, so the family order
    (SEQ before EWC before Freeze) alone decides."""
    order = _ready("SEQ,Freeze(2),EWC(1e6)", (0, 1), {"task0/plain", "fisher"}, tmp_path)
    assert order == ["run/seq/s0", "run/seq/s1", "run/ewc-1e6/s0", "run/ewc-1e6/s1", "run/freeze-2/s0",
                     "run/freeze-2/s1"]
