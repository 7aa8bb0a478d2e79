from types import SimpleNamespace

import pytest
import torch

from spurious_diag.errors import UsageError
from spurious_diag.continual.evaluation import SequenceEvaluator, TaskProgressCallback
from spurious_diag.continual.methods import Method, parse_method
from spurious_diag.continual.tasks import EvalSchedule, Task


def test_method_labels_round_trip():
    methods = [Method.seq(), Method.freeze(0), Method.freeze(3), Method.replay(0.1), Method.replay(0.0),
               Method.mix(0.2), Method.ewc(100.0), Method.ewc(0.0), Method.gp()]
    assert [m.label for m in methods] == ["SEQ", "Freeze(0)", "Freeze(3)", "REPLAY(0.1)", "REPLAY(0)", "MIX(0.2)",
                                          "EWC(100)", "EWC(0)", "GP"]
    assert [parse_method(m.label) for m in methods] == methods
    for bad in ("Freeze(1.5)", "REPLAY(1.5)", "MIX(-0.1)", "EWC(-1)", "EWC(inf)", "SEQ(1)", "GP(2)", "LoRA(4)",
                "Freeze"):
        with pytest.raises(UsageError):
            parse_method(bad)


def test_dense_then_sparse_evaluation_steps():
    schedule = EvalSchedule(dense_every=10, dense_until=200, sparse_every=50, stop_check_every=10)
    full = schedule.full_steps(400)
    assert full[:21] == list(range(0, 201, 10)) and full[21:] == [250, 300, 350, 400]
    checks = schedule.stop_check_steps(400)
    assert checks == list(range(0, 401, 10))
    assert schedule.full_steps(235) == [*range(0, 201, 10), 235]  # the last step is always evaluated
    assert EvalSchedule(stop_check_every=0).stop_check_steps(400) == full


def test_checkpoints_dense_early_then_geometric():
    steps = EvalSchedule(dense_until=200, checkpoint_every=5, checkpoint_ratio=1.5).checkpoint_steps(1000)
    assert steps[:41] == list(range(0, 201, 5))
    later = steps[41:]
    assert later == [300, 450, 675, 1000]
    assert all(b / a == pytest.approx(1.5, abs=0.01) for a, b in zip(later[:-2], later[1:-1]))


class _ScriptedEvaluator(SequenceEvaluator):
    """Scores read from a script of the model's current step: task1's accuracy rises 0.1 per 10 steps."""

    def score(self, model, task, eval_set):
        value = min(1.0, model.step / 100) if task.name == "task1" else 0.5
        self.calls.append((model.step, task.name, eval_set))
        return ({"eval_task": task.name, "eval_set": eval_set, "primary": eval_set == task.primary,
                 "exact_match": value, "first_token_acc": value},
                [{"eval_task": task.name, "eval_set": eval_set, "attribute": "all", "n": 1, "exact_match": value,
                  "first_token_acc": value, "first_token_prob": value}])


class _StepModel(torch.nn.Module):
    step = 0


def _drive(schedule, total, early_stop, stop_training, stop_when=None):
    tasks = [Task("task0", ["x"], {"test": ["x"], "val": ["x"]}), Task("task1", ["y"], {"train": ["y"]})]
    evaluator = _ScriptedEvaluator(None, tasks)
    evaluator.calls = []
    callback = TaskProgressCallback(evaluator, 1, total, schedule, early_stop=early_stop, stop_training=stop_training)
    model = _StepModel()
    callback.begin(model)
    for step in range(1, total + 1):
        model.step = step
        control = SimpleNamespace(should_training_stop=False)
        callback.on_step_end(None, SimpleNamespace(global_step=step), control, model=model)
        if control.should_training_stop:
            return callback, evaluator, step
    return callback, evaluator, total


def test_early_stop_at_first_check_reaching_target_with_full_evaluation_there():
    schedule = EvalSchedule(dense_every=10, dense_until=40, sparse_every=50, stop_check_every=5)
    callback, _, stopped = _drive(schedule, 150, early_stop=0.9, stop_training=False)
    assert stopped == 150 and callback.stop_step == 90  # first check with step/100 >= 0.9
    full = sorted({r["step"] for r in callback.rows if r["full"]})
    assert full == [0, 10, 20, 30, 40, 50, 90, 100, 150]  # schedule + the early-stop point
    checks = sorted(r["step"] for r in callback.rows if not r["full"])
    assert checks == [s for s in range(5, 90, 5) if s not in full]  # until the stop, never duplicating
    at_stop = [r for r in callback.rows if r["step"] == 90]
    assert {(r["eval_task"], r["eval_set"]) for r in at_stop} == {("task0", "test"), ("task0", "val"),
                                                                   ("task1", "train")}
    assert len(at_stop) == 3  # the check row was replaced by the full evaluation


def test_stop_training_ends_the_run_at_the_early_stop_point():
    schedule = EvalSchedule(dense_every=10, dense_until=40, sparse_every=50, stop_check_every=5)
    callback, _, stopped = _drive(schedule, 150, early_stop=0.62, stop_training=True)
    assert stopped == callback.stop_step == 65
    assert max(r["step"] for r in callback.rows) == 65
