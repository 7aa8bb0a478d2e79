"""Task Vector negation: α = 0 is θ_k bit for bit, other α by hand, mismatches named."""

import pytest
import torch

from spurious_diag.continual.task_vector import negate_task_vector
from spurious_diag.errors import MismatchError, UsageError


def test_alpha_zero_returns_the_checkpoint_bit_for_bit(make_llama):
    theta_k, start, end = make_llama(seed=1).state_dict(), make_llama(seed=2).state_dict(), make_llama(seed=3).state_dict()
    out = negate_task_vector(theta_k, start, end, 0.0)
    assert out.keys() == theta_k.keys()
    assert all(torch.equal(out[n], theta_k[n]) and out[n].dtype == theta_k[n].dtype for n in theta_k)
    assert all(out[n].data_ptr() != theta_k[n].data_ptr() for n in theta_k)  # copies, not views


def test_negation_by_hand_in_each_dtype():
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        k = {"w": torch.tensor([[1.0, 2.0]], dtype=dtype), "ids": torch.tensor([1, 2])}
        start = {"w": torch.tensor([[0.5, 0.0]], dtype=dtype), "ids": torch.tensor([0, 0])}
        end = {"w": torch.tensor([[1.5, 1.0]], dtype=dtype), "ids": torch.tensor([5, 5])}
        out = negate_task_vector(k, start, end, 0.25)  # θ_end − θ_start = [1, 1]
        assert out["w"].dtype == dtype and torch.equal(out["w"], torch.tensor([[0.75, 1.75]], dtype=dtype))
        assert torch.equal(out["ids"], k["ids"])  # integer buffers are copied, not negated


def test_alpha_one_from_the_end_undoes_the_task():
    start = {"w": torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)}
    end = {"w": start["w"] + 0.1}
    assert torch.allclose(negate_task_vector(end, start, end, 1.0)["w"], start["w"], atol=1e-15)


def test_mismatches_and_bad_alpha_are_named():
    k = {"w": torch.zeros(2)}
    with pytest.raises(MismatchError, match="w"):
        negate_task_vector(k, {}, k, 0.5)
    with pytest.raises(MismatchError, match="shape"):
        negate_task_vector(k, k, {"w": torch.zeros(3)}, 0.5)
    with pytest.raises(UsageError):
        negate_task_vector(k, k, k, float("nan"))


def test_sweep_scores_every_candidate_and_alpha_zero_is_the_checkpoint(after_task0, tiny_tokenizer, two_tasks):
    from spurious_diag.continual.evaluation import SequenceEvaluator
    from spurious_diag.continual.runner import SequenceOptions, run_sequence
    from spurious_diag.continual.task_vector import task_vector_sweep
    from spurious_diag.continual.methods import Method
    from spurious_diag.continual.tasks import EvalSchedule
    from spurious_diag.training.settings import TrainSettings

    model = after_task0()
    start = {n: t.clone() for n, t in model.state_dict().items()}
    states = {}
    for steps in (3, 6):  # the SEQ run's checkpoints at steps 3 and 6 (a constant schedule: 3 is on the way to 6)
        trial = after_task0()
        run_sequence(trial, tiny_tokenizer, two_tasks, Method.seq(), TrainSettings(steps=steps, lr=3e-3, batch_size=8),
                     seed=0, options=SequenceOptions(schedule=EvalSchedule(dense_every=3, dense_until=3, sparse_every=3),
                                                     first_task=1))
        states[steps] = {n: t.clone() for n, t in trial.state_dict().items()}
    evaluator = SequenceEvaluator(tiny_tokenizer, two_tasks)
    frame = task_vector_sweep(model, evaluator, start, states, [0.0, 0.5], progress=False)
    assert list(zip(frame["k"], frame["e"], frame["alpha"])) == [(3, 6, 0.0), (3, 6, 0.5), (6, 6, 0.0), (6, 6, 0.5)]
    assert set(frame.columns) >= {"task0/test", "task0/val", "task1/train"}
    assert all(torch.equal(t, start[n]) for n, t in model.state_dict().items())  # put back
    reference = after_task0()
    reference.load_state_dict(states[6])
    expected = {f"{r['eval_task']}/{r['eval_set']}": r["exact_match"] for r in evaluator.full(reference)[0]}
    row = frame[(frame["k"] == 6) & (frame["alpha"] == 0.0)].iloc[0]
    assert all(row[col] == value for col, value in expected.items())
    with pytest.raises(UsageError):
        task_vector_sweep(model, evaluator, start, states, [0.5], ends=[4], progress=False)
