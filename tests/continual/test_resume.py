"""A sequential run killed in the middle continues (``resume=True``) to the weights and rows of an uninterrupted one."""

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from transformers import TrainerCallback

import spurious_diag.training.engine as engine_module
from spurious_diag.continual.methods import Method
from spurious_diag.continual.runner import SequenceOptions, run_sequence
from spurious_diag.continual.tasks import EvalSchedule
from spurious_diag.errors import CheckpointNotFoundError, OutputDirError, UsageError
from spurious_diag.training.settings import TrainSettings

FAST = TrainSettings(steps=12, lr=3e-3, batch_size=8)
SCHEDULE = EvalSchedule(dense_every=4, dense_until=8, sparse_every=6, stop_check_every=2, checkpoint_every=4)


class Killed(Exception):
    """Stands for SIGKILL: nothing after it runs."""


class KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed at step {self.step}")  # before that step's checkpoint is saved


def _kill_during(monkeypatch, task_index, step):
    real = engine_module.train_model

    def train_model(model, tokenizer, records, settings, **kwargs):
        if kwargs["seed"] == task_index:  # the runner seeds task i with seed + i (seed 0 here)
            kwargs["callbacks"] = [*kwargs["callbacks"], KillAt(step)]
        return real(model, tokenizer, records, settings, **kwargs)

    monkeypatch.setattr(engine_module, "train_model", train_model)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    differ = [n for n in sa if not torch.equal(sa[n].view(torch.uint8), sb[n].view(torch.uint8))]
    assert not differ, differ[:3]


def _assert_same_tables(a, b):
    for table in ("curve", "per_attribute", "points"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table), check_exact=True)
    assert list(a.losses["step"]) == list(b.losses["step"])
    assert a.frozen_checks == b.frozen_checks and a.fisher_sums == b.fisher_sums


@pytest.mark.parametrize("method,kill_task,kill_step", [
    (Method.freeze(1), 1, 8),  # task 0 finished before the kill; task 1 resumes from its step 6, mid-epoch
    (Method.ewc(100.0), 0, 5),  # task 0 resumes from step 3, mid-epoch; its Fisher is computed after
    (Method.ewc(100.0), 1, 8),  # task 0's Fisher comes back from disk into task 1's penalty
], ids=["freeze-task1", "ewc-task0", "ewc-task1"])
def test_killed_run_resumes_to_the_uninterrupted_result(make_llama, tiny_tokenizer, two_tasks, tmp_path, monkeypatch,
                                                        method, kill_task, kill_step):
    def options(name, resume=False):
        return SequenceOptions(schedule=SCHEDULE, state_every=3, checkpoint_dir=tmp_path / f"{name}chain",
                               state_dir=tmp_path / f"{name}state", resume=resume)

    reference_model = make_llama()
    reference = run_sequence(reference_model, tiny_tokenizer, two_tasks, method, FAST, seed=0, options=options("ref_"))

    with monkeypatch.context() as patch:
        _kill_during(patch, kill_task, kill_step)
        with pytest.raises(Killed):
            run_sequence(make_llama(), tiny_tokenizer, two_tasks, method, FAST, seed=0, options=options(""))
    kept = sorted(p.name for p in (tmp_path / "state").iterdir() if p.name.startswith(("task-", "train-")))
    assert kept == ["task-0", "train-1"] if kill_task == 1 else ["train-0"]
    last_saved = (kill_step - 1) // 3 * 3
    assert [p.name for p in (tmp_path / "state" / f"train-{kill_task}").glob("checkpoint-*")] == \
        [f"checkpoint-{last_saved}"]  # only the newest is kept

    model = make_llama()  # the start of the run, as the killed process had it
    resumed = run_sequence(model, tiny_tokenizer, two_tasks, method, FAST, seed=0, options=options("", resume=True))
    _assert_same_weights(reference_model, model)
    _assert_same_tables(reference, resumed)
    if method.kind == "freeze":
        assert resumed.frozen_checks[1].ok and resumed.frozen_checks[1].identical
    # the weight-only audit chain is the uninterrupted run's, checkpoint by checkpoint
    for task in ("task0", "task1"):
        ours = sorted(p.name for p in (tmp_path / "chain" / task).glob("checkpoint-*"))
        assert ours == sorted(p.name for p in (tmp_path / "ref_chain" / task).glob("checkpoint-*"))
        for name in ours:
            with safe_open(str(tmp_path / "chain" / task / name / "model.safetensors"), "pt") as f, \
                    safe_open(str(tmp_path / "ref_chain" / task / name / "model.safetensors"), "pt") as g:
                assert all(torch.equal(f.get_tensor(n), g.get_tensor(n)) for n in f.keys())

    # resuming a finished run trains nothing and returns the same result
    monkeypatch.setattr(engine_module, "train_model", lambda *a, **k: pytest.fail("trained again"))
    again_model = make_llama()
    again = run_sequence(again_model, tiny_tokenizer, two_tasks, method, FAST, seed=0, options=options("", resume=True))
    _assert_same_weights(reference_model, again_model)
    _assert_same_tables(reference, again)


def test_resume_errors(make_llama, tiny_tokenizer, two_tasks, tmp_path):
    one = TrainSettings(steps=2, lr=3e-3, batch_size=8)

    def options(**kwargs):
        return SequenceOptions(schedule=SCHEDULE, last_task=0, state_every=1, **kwargs)

    with pytest.raises(UsageError, match="state_dir"):
        options(resume=True)
    with pytest.raises(CheckpointNotFoundError, match="nothing to resume from"):
        run_sequence(make_llama(), tiny_tokenizer, two_tasks, Method.seq(), one, seed=0,
                     options=options(state_dir=tmp_path / "none", resume=True))
    run_sequence(make_llama(), tiny_tokenizer, two_tasks, Method.seq(), one, seed=0,
                 options=options(state_dir=tmp_path / "s"))
    with pytest.raises(OutputDirError, match="resume=True"):
        run_sequence(make_llama(), tiny_tokenizer, two_tasks, Method.seq(), one, seed=0,
                     options=options(state_dir=tmp_path / "s"))
    with pytest.raises(UsageError, match=r"differing: method: 'SEQ' then, 'Freeze\(1\)' now; settings: "):
        run_sequence(make_llama(), tiny_tokenizer, two_tasks, Method.freeze(1), TrainSettings(steps=3, lr=3e-3),
                     seed=0, options=options(state_dir=tmp_path / "s", resume=True))
