"""The verdict's numeric rules: spurious, real or inconclusive forgetting, from probe numbers.

Inputs (:class:`VerdictInputs`, all optional; a missing one makes its rules *not applicable*):
old-task exact match of the model before and after Task 1 on held-out individuals; the
recovery table (:mod:`.recovery`, forgot and control rows); pretraining-format exact match
before and after (:mod:`.format_probe`). Defaults (:class:`~.options.VerdictRules`):

=========================  ==========================================================  ========
rule                       fires when                                                  supports
=========================  ==========================================================  ========
``forgetting``             acc_before − acc_after ≥ 0.20 (absolute)                    (gate)
``recovery_beats_control`` at some n: fraction ≥ 0.40 and fraction − control ≥ 0.20    spurious
``recovery_like_control``  at every n: fraction − control ≤ 0.10                       real
``pretraining_intact``     pre_after ≥ 0.80 · pre_before                                spurious
``pretraining_collapsed``  pre_after ≤ 0.50 · pre_before                                real
=========================  ==========================================================  ========

Fractions are :func:`.recovery.recovery_fraction`; the control's uses the same denominator.
The recovery rules apply only with a control and ``acc_before``; the pretraining rules only
when pre_before ≥ 0.30 (the facts must be readable in that format to begin with).

Decision:

1. ``forgetting`` not applicable or not fired → **inconclusive** (nothing measured, or no drop
   of at least ``min_drop`` to explain).
2. No knowledge probe (recovery, pretraining format) applicable → **inconclusive**.
3. Every applicable knowledge probe fired its *spurious* rule → **spurious**.
4. Every applicable knowledge probe fired its *real* rule → **real**.
5. Otherwise (probes disagree, or a number in the grey zone between the two thresholds) →
   **inconclusive**.

Linear probes, grafting and residual shift are reported as supporting evidence and never vote:
on small benchmarks a linear probe is data-starved (a value per few people), and grafting and
shift measure *where* the change is, not whether the facts survive.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import pandas as pd

from ..ties import first_best
from .options import VerdictRules

__all__ = ["VERDICTS", "VerdictRules", "VerdictInputs", "RuleOutcome", "decide"]

VERDICTS = ("spurious", "real", "inconclusive")


@dataclass
class VerdictInputs:
    """The numbers the rules read (None = not measured).

    Attributes:
        acc_before, acc_after: old-task exact match (held-out individuals) before / after Task 1.
        recovery: recovery table with ``n``, ``model`` (``forgot`` / ``control``) and
            ``recovery_fraction`` (n = 0 rows are ignored).
        pretraining_before, pretraining_after: pretraining-format exact match before / after.
    """

    acc_before: Optional[float] = None
    acc_after: Optional[float] = None
    recovery: Optional[pd.DataFrame] = field(default=None, repr=False)
    pretraining_before: Optional[float] = None
    pretraining_after: Optional[float] = None


@dataclass(frozen=True)
class RuleOutcome:
    """One rule's result.

    Attributes:
        name: the rule (module docstring table).
        status: ``fired``, ``not fired`` or ``not applicable``.
        supports: ``spurious``, ``real`` or ``gate`` (the forgetting rule).
        value: the number compared (NaN when not applicable).
        threshold: what it was compared with.
        detail: one sentence with the numbers.
    """

    name: str
    status: str
    supports: str
    value: float
    threshold: float
    detail: str

    @property
    def fired(self) -> bool:
        return self.status == "fired"

    @property
    def applicable(self) -> bool:
        return self.status != "not applicable"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "threshold"):
            if isinstance(out[key], float) and not math.isfinite(out[key]):
                out[key] = None
        return out


def _known(*values: Optional[float]) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _outcome(name: str, supports: str, ok: bool, value: float, threshold: float, detail: str) -> RuleOutcome:
    return RuleOutcome(name, "fired" if ok else "not fired", supports, float(value), float(threshold), detail)


def _na(name: str, supports: str, why: str) -> RuleOutcome:
    return RuleOutcome(name, "not applicable", supports, math.nan, math.nan, why)


def _recovery_margins(table: pd.DataFrame) -> pd.DataFrame:
    """Per n ≥ 1 with both a forgot and a control row: ``fraction``, ``control``, ``margin``."""
    rows = table[table["n"] > 0]
    forgot = rows[rows["model"] == "forgot"].set_index("n")["recovery_fraction"]
    control = rows[rows["model"] == "control"].set_index("n")["recovery_fraction"]
    both = pd.DataFrame({"fraction": forgot, "control": control}).dropna()
    both["margin"] = both["fraction"] - both["control"]
    return both.reset_index().rename(columns={"index": "n"})


def _recovery_rules(inputs: VerdictInputs, rules: VerdictRules) -> list[RuleOutcome]:
    names = ("recovery_beats_control", "recovery_like_control")
    table = inputs.recovery
    why = None
    if table is None or table.empty:
        why = "no recovery run"
    elif not (table["model"] == "control").any():
        why = "no control model: recovery without a control cannot tell knowledge from relearning"
    elif not _known(inputs.acc_before, inputs.acc_after):
        why = "old-task accuracy before forgetting unknown"
    margins = None if why else _recovery_margins(table)
    if why is None and (margins is None or margins.empty):
        why = "no recovery fraction defined (nothing forgotten, or no n run)"
    if why is not None:
        return [_na(names[0], "spurious", why), _na(names[1], "real", why)]
    assert margins is not None
    good = margins[(margins["fraction"] >= rules.recovery_min_fraction)
                   & (margins["margin"] >= rules.recovery_min_margin)]
    best = margins.iloc[first_best(margins["margin"].tolist())]
    beats = _outcome(
        names[0], "spurious", not good.empty, float(best["margin"]), rules.recovery_min_margin,
        f"best n={int(best['n'])}: recovery fraction {best['fraction']:.2f} vs control {best['control']:.2f} "
        f"(need ≥ {rules.recovery_min_fraction:.2f} and a margin ≥ {rules.recovery_min_margin:.2f})")
    like = _outcome(
        names[1], "real", bool((margins["margin"] <= rules.recovery_max_margin_real).all()),
        float(margins["margin"].max()), rules.recovery_max_margin_real,
        f"largest margin over the control {margins['margin'].max():.2f} over n = "
        f"{', '.join(str(int(n)) for n in margins['n'])} (≤ {rules.recovery_max_margin_real:.2f} means no better than "
        f"a model that never learned the task)")
    return [beats, like]


def _pretraining_rules(inputs: VerdictInputs, rules: VerdictRules) -> list[RuleOutcome]:
    names = ("pretraining_intact", "pretraining_collapsed")
    if not _known(inputs.pretraining_before, inputs.pretraining_after):
        why = "no pretraining-format records"
        return [_na(names[0], "spurious", why), _na(names[1], "real", why)]
    before, after = float(inputs.pretraining_before), float(inputs.pretraining_after)  # type: ignore[arg-type]
    if before < rules.min_pretraining_before:
        why = (f"pretraining-format accuracy before is {before:.2f} < {rules.min_pretraining_before:.2f}: "
               "the facts were not readable in that format to begin with")
        return [_na(names[0], "spurious", why), _na(names[1], "real", why)]
    ratio = after / before
    detail = f"pretraining-format exact match {before:.2f} → {after:.2f} (ratio {ratio:.2f})"
    return [
        _outcome(names[0], "spurious", ratio >= rules.pretraining_intact_ratio, ratio, rules.pretraining_intact_ratio,
                 detail + f"; intact if ≥ {rules.pretraining_intact_ratio:.2f}"),
        _outcome(names[1], "real", ratio <= rules.pretraining_collapsed_ratio, ratio,
                 rules.pretraining_collapsed_ratio, detail + f"; collapsed if ≤ {rules.pretraining_collapsed_ratio:.2f}"),
    ]


def decide(inputs: VerdictInputs, rules: VerdictRules = VerdictRules()) -> tuple[str, list[RuleOutcome], str]:
    """Apply the rules (module docstring) to measured numbers.

    Returns:
        (verdict, outcomes of every rule in table order, one-sentence reason).

    >>> decide(VerdictInputs(acc_before=0.9, acc_after=0.1, pretraining_before=0.95, pretraining_after=0.9))[0]
    'spurious'
    >>> decide(VerdictInputs(acc_before=0.9, acc_after=0.85))[0]
    'inconclusive'
    """
    if _known(inputs.acc_before, inputs.acc_after):
        drop = float(inputs.acc_before) - float(inputs.acc_after)  # type: ignore[arg-type]
        gate = _outcome("forgetting", "gate", drop >= rules.min_drop, drop, rules.min_drop,
                        f"old-task exact match {inputs.acc_before:.2f} → {inputs.acc_after:.2f} (drop {drop:.2f}; "
                        f"forgetting if ≥ {rules.min_drop:.2f})")
    else:
        gate = _na("forgetting", "gate", "old-task accuracy before and after not measured")
    outcomes = [gate] + _recovery_rules(inputs, rules) + _pretraining_rules(inputs, rules)
    if not gate.applicable:
        return "inconclusive", outcomes, "no old-task measurements: the verdict needs old-task records"
    if not gate.fired:
        return "inconclusive", outcomes, f"no forgetting to explain: {gate.detail}"
    probes = {"recovery": outcomes[1:3], "pretraining format": outcomes[3:5]}
    applicable = {name: pair for name, pair in probes.items() if pair[0].applicable}
    if not applicable:
        why = ("no knowledge probe could run (recovery needs a control; the format probe needs pretraining-format "
               "records)")
        return "inconclusive", outcomes, why
    used = " and ".join(applicable)
    if all(pair[0].fired for pair in applicable.values()):
        return "spurious", outcomes, f"forgetting, yet the knowledge is still there by {used}"
    if all(pair[1].fired for pair in applicable.values()):
        return "real", outcomes, f"forgetting, and the knowledge is gone by {used}"
    return "inconclusive", outcomes, f"the knowledge probes ({used}) disagree or fall between the thresholds"
