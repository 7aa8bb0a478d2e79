"""The preliminary runs of gradient projection: D is the weights' move between the window's steps."""

import pytest
import torch

from spurious_diag.continual.preliminary import PreliminaryRuns, preliminary_direction
from spurious_diag.errors import UsageError
from spurious_diag.training.settings import TrainSettings
from spurious_diag.training.trainer import train_model

SETTINGS = TrainSettings(steps=50, lr=1e-3, batch_size=4)


def test_direction_is_the_move_between_the_window_steps(make_llama, tiny_tokenizer, tiny_data):
    records = tiny_data.qa("task1")[:16]
    model = make_llama()
    start = {n: t.clone() for n, t in model.state_dict().items()}
    direction = preliminary_direction(model, tiny_tokenizer, records, SETTINGS, PreliminaryRuns(2, 4), seed=0)
    assert all(torch.equal(t, start[n]) for n, t in model.state_dict().items())  # the model is untouched
    at = {}
    for steps in (2, 4):  # the same data order: the constant schedule makes steps 1..2 of both runs the same
        trial = make_llama()
        train_model(trial, tiny_tokenizer, records, TrainSettings(steps=steps, lr=1e-3, batch_size=4), seed=0)
        at[steps] = dict(trial.named_parameters())
    for name, d in direction.items():
        assert torch.equal(d, at[4][name].detach().float() - at[2][name].detach().float()), name
    assert sum(float(d.norm()) for d in direction.values()) > 0


def test_an_empty_window_gives_zero_and_runs_average(make_llama, tiny_tokenizer, tiny_data):
    records = tiny_data.qa("task1")[:8]
    zero = preliminary_direction(make_llama(), tiny_tokenizer, records, SETTINGS, PreliminaryRuns(3, 3), seed=0)
    assert all(not d.any() for d in zero.values())
    one = [preliminary_direction(make_llama(), tiny_tokenizer, records, SETTINGS, PreliminaryRuns(0, 2), seed=s)
           for s in (0, 1)]
    both = preliminary_direction(make_llama(), tiny_tokenizer, records, SETTINGS, PreliminaryRuns(0, 2, runs=2), seed=0)
    for name, d in both.items():
        assert torch.allclose(d, (one[0][name] + one[1][name]) / 2, atol=1e-7), name


def test_bad_windows_are_refused():
    for early, late, runs in ((5, 4, 1), (0, 0, 1), (0, 2, 0)):
        with pytest.raises(UsageError):
            PreliminaryRuns(early, late, runs)
    with pytest.raises(UsageError):
        PreliminaryRuns(rule="svd")
    assert PreliminaryRuns(rule="official").rule == "official"
