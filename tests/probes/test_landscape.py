"""Loss landscape on the plane through three tiny Biography Llamas: the anchors' losses, projected
checkpoints, the grid, and the model's own weights put back; and answer_loss against a hand computation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spurious_diag.errors import InvalidDataError, MismatchError
from spurious_diag.geometry.plane import point_on
from spurious_diag.probes.landscape import (
    LANDSCAPE_COLUMNS,
    TRAJECTORY_COLUMNS,
    landscape_grid,
    landscape_plane,
    loss_landscape,
    project_trajectory,
)
from spurious_diag.training.evaluate import answer_loss
from spurious_diag.training.records import IGNORE_INDEX, encode_qa
from tests.probes.conftest import as_json


def _perturbed(model, seed: int, scale: float = 0.05):
    """A copy of ``model`` with seeded Gaussian noise added to every parameter (a stand-in for training steps)."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return out


def _state(model) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


@pytest.fixture
def trio(make_tiny_llama):
    """θ_a, θ_b, θ_end models: a random tiny Biography Llama and two successive perturbations."""
    a = make_tiny_llama(seed=0)
    b = _perturbed(a, 1)
    end = _perturbed(b, 2)
    return a, b, end


@pytest.fixture
def tasks(scenario):
    return {"task0": as_json(scenario.qa("task0_test")[:20]), "task1": scenario.qa("task1")[:20]}


def _plane(trio):
    return landscape_plane(*(_state(m) for m in trio))


# answer_loss


def test_answer_loss_matches_a_hand_cross_entropy_on_one_record(make_tiny_llama, tokenizer, scenario):
    model = make_tiny_llama(seed=3)
    record = scenario.qa("task0_test")[0]
    example = encode_qa(tokenizer, record.prompt, record.completion)
    ids = torch.tensor([example.input_ids])
    labels = torch.tensor(example.labels)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    answer = labels[1:] != IGNORE_INDEX
    assert int(answer.sum()) == len(tokenizer(record.completion, add_special_tokens=False).input_ids) + 1  # + <eos>
    expected = F.cross_entropy(logits[:-1][answer], labels[1:][answer]).item()
    assert answer_loss(model, tokenizer, [record]) == pytest.approx(expected, abs=1e-6)


def test_answer_loss_is_a_mean_over_tokens_independent_of_batching(make_tiny_llama, tokenizer, scenario):
    model = make_tiny_llama(seed=4)
    records = scenario.qa("task0_test")[:5]
    total, count = 0.0, 0
    for r in records:
        example = encode_qa(tokenizer, r.prompt, r.completion)
        labels = torch.tensor(example.labels)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([example.input_ids])).logits[0]
        answer = labels[1:] != IGNORE_INDEX
        total += F.cross_entropy(logits[:-1][answer], labels[1:][answer], reduction="sum").item()
        count += int(answer.sum())
    model.train()
    batched = answer_loss(model, tokenizer, as_json(records))
    one_by_one = answer_loss(model, tokenizer, records, batch_size=1)
    assert model.training, "answer_loss must put the model back in the mode it was in"
    assert batched == pytest.approx(total / count, abs=1e-5)
    assert one_by_one == pytest.approx(batched, abs=1e-5)
    with pytest.raises(InvalidDataError):
        answer_loss(model, tokenizer, [])


# the grid


@pytest.mark.parametrize("points", [[], [(0.5, 0.25)], [(-1.0, -1.0), (7.0, 12.0)], [(0.013, 0.77), (3.3, -0.41)]])
def test_grid_holds_0_and_1_exactly_and_covers_the_points(points):
    xs, ys = landscape_grid(points)
    covered = np.asarray(points + [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)], dtype=float)
    for axis, values in ((xs, covered[:, 0]), (ys, covered[:, 1])):
        assert len(axis) >= 21
        assert 0.0 in axis.tolist() and 1.0 in axis.tolist()  # exact equality, not approx
        assert np.all(np.diff(axis) > 0)
        np.testing.assert_allclose(np.diff(axis), np.diff(axis)[0], rtol=1e-9)  # uniform
        span = values.max() - values.min()
        assert axis.min() <= values.min() - 0.25 * span + 1e-12
        assert axis.max() >= values.max() + 0.25 * span - 1e-12
        assert axis.max() - axis.min() < 1.5 * span + 2 * (axis[1] - axis[0]) + 1e-12  # not wider than needed


def test_grid_size_and_margin():
    xs, ys = landscape_grid([], size=5, margin=0.0)
    assert xs.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and ys.tolist() == xs.tolist()
    with pytest.raises(InvalidDataError):
        landscape_grid([], size=1)


# the landscape and the trajectory


def test_landscape_at_the_anchors_equals_the_checkpoints_own_loss(trio, tokenizer, tasks, make_tiny_llama):
    plane = _plane(trio)
    model = make_tiny_llama(seed=9)  # neither of the three: every point must be loaded
    before = _state(model)
    frame = loss_landscape(model, tokenizer, plane, tasks, [0.0, 0.5, 1.0], [0.0, 1.0], method="SEQ", progress=False)
    assert list(frame.columns) == LANDSCAPE_COLUMNS
    assert len(frame) == 3 * 2 * 2 and set(frame["method"]) == {"SEQ"}
    assert frame[["x", "y", "task"]].drop_duplicates().shape[0] == len(frame)
    for checkpoint, (x, y) in zip(trio, [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]):
        for task, records in tasks.items():
            row = frame[(frame["x"] == x) & (frame["y"] == y) & (frame["task"] == task)]
            assert len(row) == 1
            assert row["loss"].iloc[0] == pytest.approx(answer_loss(checkpoint, tokenizer, records), abs=1e-5)
    # the three checkpoints differ, so the landscape is not flat
    assert frame.groupby("task")["loss"].std().min() > 1e-3
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before), "the model's own weights must be restored"


def test_landscape_on_a_default_grid_holds_the_anchor_nodes(trio, tokenizer, tasks, make_tiny_llama):
    plane = _plane(trio)
    xs, ys = landscape_grid([], size=3, margin=0.0)
    frame = loss_landscape(make_tiny_llama(seed=9), tokenizer, plane, {"task0": tasks["task0"]}, xs, ys,
                           progress=False)
    assert len(frame) == len(xs) * len(ys)
    direct = answer_loss(trio[1], tokenizer, tasks["task0"])
    at_b = frame[(frame["x"] == 1.0) & (frame["y"] == 0.0)]["loss"]
    assert at_b.iloc[0] == pytest.approx(direct, abs=1e-5)


def test_an_in_plane_checkpoint_projects_to_its_coordinates_and_its_loss_is_the_plane_loss(trio, tokenizer, tasks):
    plane = _plane(trio)
    a, b, end = (_state(m) for m in trio)
    inside = {n: a[n] + 0.5 * (b[n] - a[n]) + 0.25 * (end[n] - b[n]) for n in a}
    model = copy.deepcopy(trio[0])
    frame = project_trajectory(model, tokenizer, plane, [(125, inside)], tasks, method="SEQ", progress=False)
    assert list(frame.columns) == TRAJECTORY_COLUMNS
    assert len(frame) == 2 and list(frame["task"]) == ["task0", "task1"]
    assert frame["x"].to_numpy() == pytest.approx(0.5, abs=1e-6)
    assert frame["y"].to_numpy() == pytest.approx(0.25, abs=1e-6)
    assert frame["residual"].max() < 1e-6
    np.testing.assert_allclose(frame["loss"], frame["plane_loss"], atol=1e-5)
    assert set(frame["step"]) == {125} and set(frame["method"]) == {"SEQ"}


def test_real_checkpoints_project_to_the_corners_and_weights_are_restored(trio, tokenizer, tasks, make_tiny_llama):
    plane = _plane(trio)
    a, b, end = (_state(m) for m in trio)
    # a checkpoint off the plane: between θ_a and θ_b plus noise of its own
    off = _state(_perturbed(trio[0], 7, scale=0.03))
    off = {n: off[n] + 0.5 * (b[n] - a[n]) for n in off}
    model = make_tiny_llama(seed=9)
    before = _state(model)
    frame = project_trajectory(model, tokenizer, plane, [(100, a), (125, off), (150, b), (400, end)], tasks,
                               progress=False)
    assert list(frame["step"].drop_duplicates()) == [100, 125, 150, 400]
    points = frame.drop_duplicates("step").set_index("step")
    for step, (x, y) in {100: (0, 0), 150: (1, 0), 400: (1, 1)}.items():
        assert points.loc[step, "x"] == pytest.approx(x, abs=1e-6)
        assert points.loc[step, "y"] == pytest.approx(y, abs=1e-6)
        assert points.loc[step, "residual"] < 1e-6
    assert points.loc[125, "x"] == pytest.approx(0.5, abs=0.2)
    assert 0.1 < points.loc[125, "residual"] < 1.0
    for step, checkpoint in ((100, trio[0]), (150, trio[1]), (400, trio[2])):
        for task, records in tasks.items():
            row = frame[(frame["step"] == step) & (frame["task"] == task)].iloc[0]
            direct = answer_loss(checkpoint, tokenizer, records)
            assert row["loss"] == pytest.approx(direct, abs=1e-5)
            assert row["plane_loss"] == pytest.approx(direct, abs=1e-5)
    # off the plane, the projection is another model: its loss differs from the checkpoint's own
    off_rows = frame[frame["step"] == 125]
    assert (off_rows["loss"] - off_rows["plane_loss"]).abs().max() > 1e-4
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before), "the model's own weights must be restored"


def test_weights_are_restored_when_a_checkpoint_does_not_fit(trio, tokenizer, tasks, make_tiny_llama):
    plane = _plane(trio)
    a, b, _ = (_state(m) for m in trio)
    broken = {n: t for n, t in b.items() if n != "lm_head.weight"}
    model = make_tiny_llama(seed=9)
    before = _state(model)
    with pytest.raises(MismatchError, match="lm_head.weight"):
        project_trajectory(model, tokenizer, plane, [(0, a), (1, broken)], tasks, progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_plane_and_model_must_match(trio, tokenizer, tasks, make_tiny_llama):
    a, b, end = (_state(m) for m in trio)
    with pytest.raises(MismatchError, match="model.norm.weight"):
        landscape_plane(a, dict(b, **{"model.norm.weight": torch.zeros(3)}), end)
    with pytest.raises(InvalidDataError, match="collinear"):
        landscape_plane(a, b, {n: b[n] + (b[n] - a[n]) for n in a})
    plane = landscape_plane(a, b, end)
    wider = make_tiny_llama(seed=0, hidden_size=64)
    with pytest.raises(MismatchError, match="shape"):
        loss_landscape(wider, tokenizer, plane, tasks, [0.0], [0.0], progress=False)
    with pytest.raises(InvalidDataError, match="task1"):
        loss_landscape(trio[0], tokenizer, plane, {"task0": tasks["task0"], "task1": []}, [0.0], [0.0], progress=False)


def test_a_plane_over_some_tensors_keeps_the_others(trio, tokenizer, tasks):
    a, b, end = (_state(m) for m in trio)
    names = [n for n in a if ".layers.1." in n]
    plane = landscape_plane(a, b, end, names=names)
    model = copy.deepcopy(trio[2])  # θ_end outside the plane
    frame = loss_landscape(model, tokenizer, plane, {"task0": tasks["task0"]}, [1.0], [1.0], progress=False)
    # at (1, 1) the plane's tensors are θ_end's too, so the model is θ_end throughout
    assert frame["loss"].iloc[0] == pytest.approx(answer_loss(trio[2], tokenizer, tasks["task0"]), abs=1e-5)
    mixed = {n: point_on(plane, 0.0, 0.0)[n] if n in names else end[n] for n in end}
    frame = loss_landscape(model, tokenizer, plane, {"task0": tasks["task0"]}, [0.0], [0.0], progress=False)
    check = copy.deepcopy(trio[2])
    check.load_state_dict(mixed)
    assert frame["loss"].iloc[0] == pytest.approx(answer_loss(check, tokenizer, tasks["task0"]), abs=1e-5)
