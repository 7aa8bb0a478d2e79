"""The paper's EWC Fisher (batch-size-weighted squared batch-mean gradients) and its running average, by hand."""

import pytest
import torch

from spurious_diag.continual.ewc import (FisherDiagonal, batch_fisher, fisher_from_batch_gradients,
                                         running_average)
from spurious_diag.errors import MismatchError, UsageError


def test_fisher_of_a_two_parameter_model_by_hand():
    """y = w1·x1 + w2·x2, loss = mean over the batch of (y − t)²/2, at w = (1, −1)."""
    w = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    data = [([1.0, 0.0], 0.0), ([0.0, 2.0], 0.0), ([1.0, 1.0], 1.0)]  # residuals y − t: 1, −2, −1
    batches = [data[:2], data[2:]]
    grads = []
    for batch in batches:
        x = torch.tensor([d[0] for d in batch], dtype=torch.float64)
        t = torch.tensor([d[1] for d in batch], dtype=torch.float64)
        loss = (((x @ w) - t) ** 2 / 2).mean()
        (g,) = torch.autograd.grad(loss, w)
        grads.append((len(batch), {"w": g}))
    # batch 1: mean of r·x = ((1)(1, 0) + (−2)(0, 2)) / 2 = (0.5, −2); batch 2: (−1)(1, 1) = (−1, −1)
    # F = (2·(0.25, 4) + 1·(1, 1)) / 3 = (0.5, 3)
    fisher = fisher_from_batch_gradients(grads)["w"]
    assert torch.allclose(fisher.double(), torch.tensor([0.5, 3.0], dtype=torch.float64))


def test_running_average_by_hand_and_its_anchor():
    f0 = FisherDiagonal({"w": torch.tensor([4.0, 0.0])}, {"w": torch.tensor([0.0, 0.0])}, "task0", 2)
    f1 = FisherDiagonal({"w": torch.tensor([1.0, 3.0])}, {"w": torch.tensor([1.0, 1.0])}, "task1", 2)
    assert running_average(f0, None, 0) is f0
    avg = running_average(f1, f0, 1)  # (F_1 + 1·F_0) / 2
    assert torch.equal(avg.fisher["w"], torch.tensor([2.5, 1.5])) and torch.equal(avg.anchor["w"], f1.anchor["w"])
    f2 = FisherDiagonal({"w": torch.tensor([0.5, 0.0])}, {"w": torch.tensor([2.0, 2.0])}, "task2", 2)
    assert torch.equal(running_average(f2, avg, 2).fisher["w"], torch.tensor([(0.5 + 2 * 2.5) / 3, 1.0]))
    with pytest.raises(UsageError):
        running_average(f1, f0, 0)
    with pytest.raises(MismatchError):
        running_average(FisherDiagonal({"v": torch.ones(2)}, {"v": torch.ones(2)}, "x", 1), f0, 1)


def test_batch_fisher_of_a_model_weights_its_batches_by_size(make_llama, tiny_tokenizer, tiny_data):
    """The model-level Fisher equals the batch gradients taken by hand (5 records in batches of 2, 2, 1)."""
    from spurious_diag.training.records import PaddingCollator, encode_records

    model = make_llama()
    records = tiny_data.qa("task1")[:5]
    fisher = batch_fisher(model, tiny_tokenizer, records, batch_size=2, source="task1")
    assert fisher.n_examples == 5 and fisher.source == "task1"
    examples = encode_records(tiny_tokenizer, records)
    collate = PaddingCollator(pad_token_id=tiny_tokenizer.pad_token_id)
    params = dict(model.named_parameters())
    expected = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
    model.eval()
    for chunk in (examples[0:2], examples[2:4], examples[4:5]):
        batch = collate([{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in chunk])
        loss = model(**batch).loss
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (n, _), g in zip(params.items(), grads):
            if g is not None:
                expected[n] += len(chunk) * g.double() ** 2
    for name, f in fisher.fisher.items():
        assert torch.allclose(f.double(), expected[name] / 5, rtol=1e-4, atol=1e-12), name
    assert all(torch.equal(fisher.anchor[n], p) for n, p in params.items())
