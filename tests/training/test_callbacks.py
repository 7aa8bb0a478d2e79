"""The evaluation and early-stop callbacks, driven step by step as Trainer drives them."""

from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl

from spurious_diag.errors import UsageError
from spurious_diag.training.callbacks import EarlyStopAtCallback, EvaluateEveryCallback


def _drive(callbacks, model, steps):
    """on_train_begin, then on_step_end for steps 1..steps, until a callback stops training."""
    control, state = TrainerControl(), SimpleNamespace(global_step=0)
    for cb in callbacks:
        cb.on_train_begin(None, state, control, model=model)
    for step in range(1, steps + 1):
        state.global_step = step
        for cb in callbacks:
            cb.on_step_end(None, state, control, model=model)
        if control.should_training_stop:
            return step
    return steps


def _scripted(scores):
    """An evaluate() that returns the next exact match of ``scores`` at each call."""
    it = iter(scores)
    return lambda model: {"exact_match": next(it)}


@pytest.fixture
def model():
    return torch.nn.Linear(2, 2)


def test_stops_at_the_first_evaluation_reaching_the_threshold(model):
    evaluator = EvaluateEveryCallback(5, _scripted([0.0, 0.3, 0.6, 0.9, 0.95]))
    stopper = EarlyStopAtCallback(evaluator, 0.5)
    assert _drive([evaluator, stopper], model, 20) == 10
    assert stopper.stopped_at == 10 and [r["step"] for r in evaluator.rows] == [0, 5, 10]


def test_records_the_point_and_trains_on_without_stop_training(model):
    evaluator = EvaluateEveryCallback(5, _scripted([0.0, 0.3, 0.6, 0.2, 0.95]))
    stopper = EarlyStopAtCallback(evaluator, 0.5, stop_training=False)
    assert _drive([evaluator, stopper], model, 20) == 20
    assert stopper.stopped_at == 10  # the first one, not the later 0.95
    assert list(evaluator.frame()["exact_match"]) == [0.0, 0.3, 0.6, 0.2, 0.95]


def test_never_reached_stays_none_and_state_round_trips(model):
    evaluator = EvaluateEveryCallback(4, _scripted([0.1, 0.2, 0.3]))
    stopper = EarlyStopAtCallback(evaluator, 0.9)
    assert _drive([evaluator, stopper], model, 8) == 8 and stopper.stopped_at is None
    again = EvaluateEveryCallback(4, _scripted([]))
    again.load_state_dict(evaluator.state_dict())
    assert again.rows == evaluator.rows


def test_evaluation_leaves_the_mode_and_runs_without_grad(model):
    seen = []
    model.train()
    evaluator = EvaluateEveryCallback(1, lambda m: seen.append((m.training, torch.is_grad_enabled())) or {"x": 1.0})
    _drive([evaluator], model, 1)
    assert seen == [(False, False), (False, False)] and model.training


def test_a_period_below_one_is_refused():
    with pytest.raises(UsageError):
        EvaluateEveryCallback(0, lambda m: {})
