"""Freezing mid-run: frozen tensors leave the optimizer, so AdamW's weight decay cannot move them."""

import torch

from spurious_diag.freeze import freeze_bottom_layers, remove_frozen_from_optimizer


def _step(model, optimizer):
    optimizer.zero_grad()
    model(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss.backward()
    optimizer.step()


def test_removed_tensors_leave_groups_and_state_and_never_move(make_model):
    model = make_model("llama", 3)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    _step(model, optimizer)  # AdamW now holds state for every tensor
    report = freeze_bottom_layers(model, 1)
    removed = remove_frozen_from_optimizer(optimizer)
    frozen = {id(p) for n, p in model.named_parameters() if n in report.frozen}
    assert removed == len(report.frozen) > 0
    assert not frozen & {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not frozen & {id(p) for p in optimizer.state}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(3):
        _step(model, optimizer)
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in report.frozen)
    assert any(not torch.equal(before[n], after[n]) for n in before if n not in report.frozen)


def test_zeroed_gradients_alone_would_not_have_kept_them(make_model):
    """The reason for removing them: with decay, a tensor with a zero gradient still moves."""
    model = make_model("llama", 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    weight = model.model.embed_tokens.weight
    before = weight.detach().clone()
    weight.grad = torch.zeros_like(weight)
    optimizer.step()
    assert not torch.equal(before, weight)


def test_through_a_wrapper_that_holds_the_optimizer(make_model):
    model = make_model("llama", 3)
    inner = torch.optim.AdamW(model.parameters(), lr=1e-3)
    wrapper = type("AcceleratedOptimizer", (), {"optimizer": inner})()
    freeze_bottom_layers(model, 2)
    assert remove_frozen_from_optimizer(wrapper) > 0
    assert all(p.requires_grad for g in inner.param_groups for p in g["params"])
