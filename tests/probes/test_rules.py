"""The verdict's rules on constructed probe numbers."""

import pandas as pd

from spurious_diag.probes.rules import VerdictInputs, VerdictRules, decide


def _recovery(pairs):
    """pairs: {n: (forgot fraction, control fraction)} as a recovery table."""
    rows = [{"n": 0, "model": "forgot", "recovery_fraction": 0.0}]
    for n, (forgot, control) in pairs.items():
        rows += [{"n": n, "model": "forgot", "recovery_fraction": forgot},
                 {"n": n, "model": "control", "recovery_fraction": control}]
    return pd.DataFrame(rows)


def _status(outcomes):
    return {o.name: o.status for o in outcomes}


def test_spurious_when_recovery_beats_control_and_biographies_survive():
    inputs = VerdictInputs(0.90, 0.21, _recovery({10: (0.0, -0.05), 100: (0.48, -0.06)}), 0.96, 0.90)
    verdict, outcomes, reason = decide(inputs)
    assert verdict == "spurious"
    assert _status(outcomes) == {"forgetting": "fired", "recovery_beats_control": "fired",
                                 "recovery_like_control": "not fired", "pretraining_intact": "fired",
                                 "pretraining_collapsed": "not fired"}
    assert "recovery" in reason and "pretraining" in reason


def test_real_when_recovery_is_like_control_and_biographies_collapsed():
    inputs = VerdictInputs(0.90, 0.05, _recovery({10: (0.01, 0.0), 100: (0.06, 0.02)}), 0.96, 0.05)
    verdict, outcomes, _ = decide(inputs)
    assert verdict == "real"
    assert {o.name for o in outcomes if o.fired} == {"forgetting", "recovery_like_control", "pretraining_collapsed"}


def test_inconclusive_when_probes_disagree_or_sit_between_thresholds():
    disagree = VerdictInputs(0.90, 0.05, _recovery({100: (0.6, 0.0)}), 0.96, 0.05)
    assert decide(disagree)[0] == "inconclusive"
    grey = VerdictInputs(0.90, 0.10, _recovery({100: (0.30, 0.15)}))  # margin 0.15: neither rule
    verdict, outcomes, _ = decide(grey)
    assert verdict == "inconclusive" and not any(o.fired for o in outcomes[1:])
    low_fraction = VerdictInputs(0.90, 0.10, _recovery({100: (0.35, 0.0)}))  # margin ok, fraction < 0.40
    assert decide(low_fraction)[0] == "inconclusive"


def test_no_drop_or_no_data_is_inconclusive():
    verdict, outcomes, reason = decide(VerdictInputs(0.90, 0.80, _recovery({100: (0.9, 0.0)}), 0.9, 0.9))
    assert verdict == "inconclusive" and outcomes[0].status == "not fired" and "no forgetting" in reason
    verdict, outcomes, _ = decide(VerdictInputs())
    assert verdict == "inconclusive" and all(o.status == "not applicable" for o in outcomes)
    # Forgetting but no knowledge probe could run.
    assert decide(VerdictInputs(0.9, 0.1))[0] == "inconclusive"


def test_a_probe_without_its_inputs_does_not_vote():
    no_control = _recovery({100: (0.9, 0.0)})
    no_control = no_control[no_control["model"] == "forgot"]
    verdict, outcomes, _ = decide(VerdictInputs(0.9, 0.1, no_control, 0.95, 0.94))
    status = _status(outcomes)
    assert status["recovery_beats_control"] == "not applicable" and "control" in outcomes[1].detail
    assert verdict == "spurious"  # decided by the format probe alone
    # Facts never readable in the pretraining format: that probe does not apply.
    verdict, outcomes, _ = decide(VerdictInputs(0.9, 0.1, _recovery({100: (0.02, 0.0)}), 0.10, 0.01))
    assert _status(outcomes)["pretraining_collapsed"] == "not applicable" and verdict == "real"


def test_thresholds_are_settings():
    inputs = VerdictInputs(0.90, 0.21, _recovery({100: (0.35, 0.0)}))
    assert decide(inputs)[0] == "inconclusive"
    assert decide(inputs, VerdictRules(recovery_min_fraction=0.3))[0] == "spurious"
    assert decide(VerdictInputs(0.5, 0.35, None, 0.9, 0.9), VerdictRules(min_drop=0.1))[0] == "spurious"


def test_rule_outcomes_serialize():
    _, outcomes, _ = decide(VerdictInputs())
    d = outcomes[0].to_dict()
    assert d["status"] == "not applicable" and d["value"] is None


def test_tied_recovery_margins_name_the_first_n():
    # 0.3 - 0.1 = 0.19999999999999998 and 0.5 - 0.3 = 0.2: equal margins apart from rounding.
    inputs = VerdictInputs(0.90, 0.21, _recovery({10: (0.3, 0.1), 100: (0.5, 0.3)}), 0.96, 0.90)
    beats = next(o for o in decide(inputs)[1] if o.name == "recovery_beats_control")
    assert "best n=10:" in beats.detail
