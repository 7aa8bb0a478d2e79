"""Gradient projection: orthogonality row by row, the official rule by hand, and D = 0 leaves training as SEQ."""

import pytest
import torch

from spurious_diag.continual.projection import (GradientProjector, ProjectionCallback, mean_direction, project_out,
                                                weight_direction)
from spurious_diag.errors import MismatchError, UsageError
from spurious_diag.training.settings import TrainSettings
from spurious_diag.training.trainer import train_model


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.double(), b.double()
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_each_row_ends_orthogonal_to_the_direction_row():
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(64, 48, generator=g)
    direction = torch.randn(64, 48, generator=g)
    before = _cosines(grad, direction)
    assert before.abs().max() > 0.2  # there was something to remove
    projected = project_out(grad, direction)
    assert _cosines(projected, direction).abs().max() <= 1e-6
    # what was removed lies along D, row by row: the rest of each row is untouched
    removed = grad.double() - projected.double()
    assert _cosines(removed, direction).abs().min() == pytest.approx(1.0, abs=1e-6)


def test_vectors_are_projected_as_a_whole_and_zero_rows_are_left_alone():
    grad = torch.tensor([3.0, 4.0, 0.0])
    assert torch.allclose(project_out(grad, torch.tensor([1.0, 0.0, 0.0])), torch.tensor([0.0, 4.0, 0.0]))
    rows = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    direction = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    out = project_out(rows, direction)
    assert torch.equal(out[0], rows[0]) and torch.allclose(out[1], torch.tensor([-0.5, 0.5]))


def test_the_official_rule_subtracts_d_times_the_cosine():
    grad = torch.tensor([[3.0, 4.0]])  # |g| = 5
    direction = torch.tensor([[2.0, 0.0]])  # cos(g, D) = 3/5
    out = project_out(grad, direction, rule="official")
    assert torch.allclose(out, torch.tensor([[3.0 - 2.0 * 0.6, 4.0]]))


def test_bad_inputs_are_named():
    with pytest.raises(MismatchError):
        project_out(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(UsageError):
        project_out(torch.zeros(2), torch.zeros(2), rule="svd")
    with pytest.raises(MismatchError, match="w"):
        weight_direction({"w": torch.zeros(2)}, {"w": torch.zeros(3)})
    with pytest.raises(UsageError):
        mean_direction([])


def test_direction_of_preliminary_runs_is_their_mean_move():
    early = {"w": torch.tensor([1.0, 1.0])}
    runs = [weight_direction(early, {"w": torch.tensor([2.0, 1.0])}),
            weight_direction(early, {"w": torch.tensor([1.0, 3.0])})]
    assert torch.equal(mean_direction(runs)["w"], torch.tensor([0.5, 1.0]))


def test_projector_touches_only_the_named_gradients():
    model = torch.nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()
    bias_grad = model.bias.grad.clone()
    done = GradientProjector({"weight": torch.ones(2, 3)}).apply(model)
    assert done == 1 and torch.equal(model.bias.grad, bias_grad)
    assert model.weight.grad.abs().max() < 1e-6  # the gradient of a sum is all along the ones


def test_a_zero_direction_trains_bit_identically_to_seq(make_llama, tiny_tokenizer, tiny_data):
    records = tiny_data.qa("task1")[:16]
    settings = TrainSettings(steps=3, lr=1e-3, batch_size=4)
    seq, projected = make_llama(), make_llama()
    train_model(seq, tiny_tokenizer, records, settings, seed=0)
    zero = {name: torch.zeros_like(p) for name, p in projected.named_parameters()}
    train_model(projected, tiny_tokenizer, records, settings, seed=0,
                callbacks=[ProjectionCallback(GradientProjector(zero))])
    changed = [n for n, p in seq.state_dict().items() if not torch.equal(p, projected.state_dict()[n])]
    assert not changed
    assert any(not torch.equal(p, q) for p, q in zip(seq.parameters(), make_llama().parameters()))  # it trained
