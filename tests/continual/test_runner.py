import math

import pytest
import torch

import spurious_diag.continual.runner as runner_module
import spurious_diag.training.engine as engine_module
from spurious_diag.continual.ewc import EwcPenalty, diagonal_fisher
from spurious_diag.continual.methods import Method
from spurious_diag.continual.preliminary import PreliminaryRuns
from spurious_diag.continual.replay import replay_count, replay_mix
from spurious_diag.continual.runner import SequenceOptions, run_sequence
from spurious_diag.continual.tasks import EvalSchedule, Task
from spurious_diag.training.settings import TrainSettings

FAST = TrainSettings(steps=12, lr=3e-3, batch_size=8)
SCHEDULE = EvalSchedule(dense_every=4, dense_until=8, sparse_every=6, stop_check_every=2, checkpoint_every=4)
RUN = SequenceOptions(schedule=SCHEDULE)
TASK1 = SequenceOptions(schedule=SCHEDULE, first_task=1)


def _state(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_freeze_keeps_frozen_tensors_bit_identical_across_task1(after_task0, tiny_tokenizer, two_tasks):
    model = after_task0()
    before = _state(model)
    result = run_sequence(model, tiny_tokenizer, two_tasks, Method.freeze(1), FAST, seed=0, options=TASK1)
    after = _state(model)
    frozen = set(result.freeze_reports[1].frozen)
    assert frozen == {n for n in before if n.startswith(("model.embed_tokens.", "model.layers.0."))}
    for name in before:
        if name in frozen:
            assert torch.equal(before[name].view(torch.uint8), after[name].view(torch.uint8)), name
        else:
            assert not torch.equal(before[name], after[name]), f"{name} did not train"
    check = result.frozen_checks[1]
    assert check.ok and sorted(check.identical) == sorted(frozen)


def test_freeze_does_not_touch_the_first_task(make_llama, tiny_tokenizer, two_tasks):
    model = make_llama()
    result = run_sequence(model, tiny_tokenizer, two_tasks, Method.freeze(2), FAST, seed=0, options=RUN)
    assert 0 not in result.freeze_reports and 1 in result.freeze_reports
    assert not any(p.requires_grad for n, p in model.named_parameters() if "layers.1." in n)


def test_mix_adds_the_right_number_of_old_examples(make_llama, tiny_tokenizer, two_tasks, monkeypatch):
    old, new = list(two_tasks[0].train), list(two_tasks[1].train)
    mixed = replay_mix(new, old, 0.25, seed=3)
    assert replay_count(0.25, len(old)) == round(0.25 * len(old)) == 12
    assert mixed[:len(new)] == new and len(mixed) == len(new) + 12
    assert all(r in old for r in mixed[len(new):]) and len(set(map(id, mixed[len(new):]))) == 12
    assert replay_mix(new, old, 0.25, seed=3) == mixed and replay_mix(new, old, 0.25, seed=4) != mixed

    seen = []
    real = engine_module.train_model

    def spy(model, tokenizer, records, *args, **kwargs):
        seen.append(list(records))
        return real(model, tokenizer, records, *args, **kwargs)

    monkeypatch.setattr(engine_module, "train_model", spy)
    run_sequence(make_llama(), tiny_tokenizer, two_tasks, Method.mix(0.25), FAST, seed=0, options=RUN)
    assert [len(r) for r in seen] == [len(old), len(new) + 12]  # nothing replayed into the first task
    assert sum(r in old for r in seen[1]) == 12


def test_ewc_penalty_is_zero_at_anchor_and_positive_elsewhere(make_llama, tiny_tokenizer, two_tasks):
    model = make_llama()
    fisher = diagonal_fisher(model, tiny_tokenizer, two_tasks[0].train, source="task0")
    assert fisher.n_examples == len(two_tasks[0].train) and fisher.source == "task0"
    assert all((f >= 0).all() for f in fisher.fisher.values()) and fisher.total() > 0
    penalty = EwcPenalty([fisher], lam=10.0)
    assert float(penalty(model).detach()) == 0.0
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(0.01)
    value = penalty(model)
    assert value.requires_grad
    value = float(value.detach())
    assert value > 0
    expected = 5.0 * (fisher.fisher["model.layers.0.mlp.up_proj.weight"] * 0.01 ** 2).sum()
    assert value == pytest.approx(float(expected), rel=1e-4)


def test_ewc_penalty_value_and_gradient_match_the_float64_formula():
    """λ/2 Σ_terms Σ F (θ − θ*)² and its gradient λ Σ_terms F (θ − θ*), against autograd through
    the plain formula in float64; a frozen tensor gets no term, and a bf16 weight its own dtype."""
    from spurious_diag.continual.ewc import FisherDiagonal

    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    model[1].bias.requires_grad_(False)
    names = [n for n, _ in model.named_parameters()]
    terms = [FisherDiagonal({n: torch.rand(p.shape, generator=gen) for n, p in model.named_parameters()},
                            {n: p.detach() + torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()},
                            f"t{t}", 1) for t in range(2)]
    value = EwcPenalty(terms, lam=3.0)(model)
    value.backward()
    params = {n: p.detach().double().requires_grad_() for n, p in model.named_parameters()}
    reference = 1.5 * sum((t.fisher[n].double() * (params[n] - t.anchor[n].double()) ** 2).sum()
                          for t in terms for n in names if n != "1.bias")
    reference.backward()
    assert float(value) == pytest.approx(float(reference), rel=1e-6)
    for n, p in model.named_parameters():
        if n == "1.bias":
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad.double(), params[n].grad, rtol=1e-6, atol=1e-7)
    half = torch.nn.Linear(3, 2).to(torch.bfloat16)
    term = FisherDiagonal({n: torch.ones(p.shape) for n, p in half.named_parameters()},
                          {n: torch.zeros(p.shape) for n, p in half.named_parameters()}, "bf16", 1)
    EwcPenalty([term], lam=1.0)(half).backward()
    assert half.weight.grad.dtype == torch.bfloat16
    torch.testing.assert_close(half.weight.grad, half.weight.detach())  # λ F (θ − 0) with F = 1


def test_ewc_fisher_is_computed_on_task0_data_at_the_end_of_task0(after_task0, tiny_tokenizer, two_tasks, monkeypatch):
    calls = []
    real = runner_module.batch_fisher

    def spy(model, tokenizer, records, **kwargs):
        calls.append((list(records), _state(model), kwargs["batch_size"]))
        return real(model, tokenizer, records, **kwargs)

    monkeypatch.setattr(runner_module, "batch_fisher", spy)
    model = after_task0()
    end_of_task0 = _state(model)
    strong = run_sequence(model, tiny_tokenizer, two_tasks, Method.ewc(1e6), FAST, seed=0, options=TASK1)
    assert len(calls) == 1
    records, weights, batch_size = calls[0]
    assert records == list(two_tasks[0].train) and batch_size == FAST.batch_size
    assert all(torch.equal(weights[n], end_of_task0[n]) for n in weights)
    assert strong.fisher_sums[0] > 0
    moved_ewc = sum(float((p.detach() - end_of_task0[n]).norm()) for n, p in model.named_parameters())
    seq = after_task0()
    run_sequence(seq, tiny_tokenizer, two_tasks, Method.seq(), FAST, seed=0, options=TASK1)
    moved_seq = sum(float((p.detach() - end_of_task0[n]).norm()) for n, p in seq.named_parameters())
    assert moved_ewc < moved_seq  # the penalty holds the weights near the anchor


def test_curve_points_and_stop_training(make_llama, tiny_tokenizer, two_tasks):
    # A Task 1 with one constant answer is learned within a few steps, so its accuracy crosses the target.
    answer = two_tasks[0].train[0].completion
    constant = [{"prompt": r.prompt, "completion": answer} for r in two_tasks[1].train]
    tasks = [two_tasks[0], Task("task1", constant, {"train": constant})]
    # How many steps that takes depends on the CPU's floating-point path: the budget grows (within a bound)
    # until the target is crossed before the last step, which is what the rest of the test needs.
    for steps in (12, 24, 48, 96):
        settings = [FAST, TrainSettings(steps=steps, lr=1e-2, batch_size=8, early_stop_at=0.5,
                                                stop_training=False)]
        free = run_sequence(make_llama(), tiny_tokenizer, tasks, Method.seq(), settings, seed=0, options=RUN)
        task1 = free.curve.query("task_index == 1 and eval_task == 'task1'")
        if (task1.query("step < @steps")["exact_match"] >= 0.5).any():
            break
    else:
        pytest.fail(f"precondition: a Task 1 with one constant answer never reached 0.5 within {steps} steps")
    full_steps = sorted(free.curve.query("task_index == 1 and full")["step"].unique())
    points = free.points.set_index(["task_index", "point"])
    stop = int(points.loc[(1, "early_stop"), "step"])
    assert bool(points.loc[(1, "early_stop"), "reached"]) and 0 < stop < steps
    assert points.loc[(1, "end"), "step"] == steps and points.loc[(0, "end"), "step"] == 12
    assert set(SCHEDULE.full_steps(steps)) <= set(full_steps) and stop in full_steps
    checked = sorted(task1["step"])
    # every check step up to the stop and every full evaluation, each once (checks alone end at the stop)
    expected = {s for s in SCHEDULE.stop_check_steps(steps) if s <= stop} | set(SCHEDULE.full_steps(steps))
    assert checked == sorted(expected)
    assert task1.query("step < @stop")["exact_match"].max() < 0.5 <= task1.query("step == @stop")["exact_match"].max()
    assert len(free.curve.query("task_index == 1 and step == @stop")) == 3  # every set scored there

    settings[1] = TrainSettings(steps=steps, lr=1e-2, batch_size=8, early_stop_at=0.5, stop_training=True)
    stopped = run_sequence(make_llama(), tiny_tokenizer, tasks, Method.seq(), settings, seed=0, options=RUN)
    spoints = stopped.points.set_index(["task_index", "point"])
    assert spoints.loc[(1, "early_stop"), "step"] == spoints.loc[(1, "end"), "step"] == stop
    assert stopped.curve["step"].max() == max(12, stop)  # Task 0's 12 steps, Task 1 up to its stop
    assert stopped.curve.query("task_index == 1")["step"].max() == stop

    def at_stop(result):
        rows = result.curve[(result.curve["task_index"] == 1) & (result.curve["step"] == stop) & result.curve["full"]]
        return rows.sort_values(["eval_task", "eval_set"])

    assert list(at_stop(stopped)["exact_match"]) == list(at_stop(free)["exact_match"])


def test_checkpoints_form_a_chain_the_audit_reads(after_task0, tiny_tokenizer, two_tasks, tmp_path):
    from spurious_diag import AuditOptions, audit
    from spurious_diag.io.chain import list_chain

    run_sequence(after_task0(), tiny_tokenizer, two_tasks, Method.freeze(1), FAST, seed=0,
                 options=SequenceOptions(schedule=SCHEDULE, first_task=1, checkpoint_dir=tmp_path))
    chain = tmp_path / "task1"
    assert [step for step, _ in list_chain(str(chain))] == SCHEDULE.checkpoint_steps(12) == [0, 4, 8, 12]
    assert not list((chain / "checkpoint-4").glob("optimizer*"))  # weights only
    result = audit([chain], AuditOptions(rank=2), progress=False)
    assert sorted(result.updates["update"].unique()) == [1, 2, 3]
    frozen = result.updates[result.updates["name"].str.startswith("model.layers.0.")]
    assert (frozen["fro"] == 0).all()
    trained = result.updates[result.updates["name"].str.startswith("model.layers.1.")]
    assert (trained["fro"] > 0).all()


def test_a_frozen_tensor_that_moves_is_an_error(after_task0, tiny_tokenizer, two_tasks, monkeypatch):
    from spurious_diag.errors import FrozenWeightsChangedError

    real = engine_module.freeze_bottom_layers

    def leaky(model, n, embeddings=True):  # reports the freeze but leaves block 0 trainable
        report = real(model, n, embeddings)
        for p in model.model.layers[0].parameters():
            p.requires_grad_(True)
        return report

    monkeypatch.setattr(engine_module, "freeze_bottom_layers", leaky)
    with pytest.raises(FrozenWeightsChangedError, match="frozen tensors changed"):
        run_sequence(after_task0(), tiny_tokenizer, two_tasks, Method.freeze(1), FAST, seed=0, options=TASK1)


def test_gp_steps_are_orthogonal_to_the_preliminary_direction(after_task0, tiny_tokenizer, two_tasks, monkeypatch):
    """Every gradient the optimizer sees has each row orthogonal to D's row (|cos| <= 1e-6)."""
    import spurious_diag.continual.projection as projection_module

    seen = []
    real_apply = projection_module.GradientProjector.apply

    def checked(self, model):
        done = real_apply(self, model)
        for name, p in model.named_parameters():
            d = self.directions.get(name)
            if d is None or p.grad is None or p.grad.ndim != 2:
                continue
            g, dd = p.grad.double(), d.double()
            rows = (dd.norm(dim=1) > 0) & (g.norm(dim=1) > 0)
            cos = (g * dd).sum(1)[rows] / (g.norm(dim=1)[rows] * dd.norm(dim=1)[rows])
            seen.append(float(cos.abs().max()) if rows.any() else 0.0)
        return done

    monkeypatch.setattr(projection_module.GradientProjector, "apply", checked)
    options = SequenceOptions(schedule=SCHEDULE, first_task=1, projection=PreliminaryRuns(1, 3))
    model = after_task0()
    before = _state(model)
    run_sequence(model, tiny_tokenizer, two_tasks, Method.gp(), FAST, seed=0, options=options)
    assert len(seen) >= FAST.steps and max(seen) <= 1e-6
    assert any(not torch.equal(before[n], p) for n, p in _state(model).items())  # it trained


def test_replay_adds_half_a_batch_of_buffer_examples_to_every_later_batch(make_llama, tiny_tokenizer, two_tasks,
                                                                        monkeypatch):
    """REPLAY(f): a buffer of f of Task 0's records; every Task 1 batch of B gets B/2 of them, none in Task 0."""
    from spurious_diag.continual.replay import ReplayCollator, replay_buffer
    from spurious_diag.training.records import encode_records

    buffer = replay_buffer([two_tasks[0].train], 0.25, seed=1)
    assert len(buffer) == 12 and all(r in two_tasks[0].train for r in buffer)
    old_ids = {e.input_ids for e in encode_records(tiny_tokenizer, buffer)}
    new_ids = {e.input_ids for e in encode_records(tiny_tokenizer, two_tasks[1].train)}
    batches = []
    real_call = ReplayCollator.__call__

    def spy(self, features):
        batch = real_call(self, features)
        batches.append((len(features), [tuple(features[i]["input_ids"]) for i in range(len(features))],
                        [self.buffer[i].input_ids for i in self.draw(features)], batch["input_ids"].shape[0]))
        return batch

    monkeypatch.setattr(ReplayCollator, "__call__", spy)
    run_sequence(make_llama(), tiny_tokenizer, two_tasks, Method.replay(0.25), FAST, seed=0, options=RUN)
    # Task 1's steps only (the data loader reads one batch ahead): Task 0 trains without replay
    assert FAST.steps <= len(batches) <= FAST.steps + 1
    assert sum(size == FAST.batch_size for size, *_ in batches) >= FAST.steps // 2
    for size, new, replayed, padded in batches:
        # B new examples (fewer in an epoch's last batch), B/2 replayed
        assert 0 < size <= FAST.batch_size and len(replayed) == size // 2 and padded == size + size // 2
        assert set(new) <= new_ids and set(replayed) <= old_ids
    # with replacement, seeded by the batch: the same batch draws the same examples again
    collator = ReplayCollator(encode_records(tiny_tokenizer, buffer), tiny_tokenizer.pad_token_id, seed=1)
    features = [{"input_ids": list(e), "labels": list(e)} for e in list(new_ids)[:8]]
    assert collator.draw(features) == collator.draw(features) and len(collator.draw(features)) == 4


@pytest.mark.parametrize("method, options", [
    (Method.replay(0.0), TASK1),
    (Method.ewc(0.0), TASK1),
    (Method.mix(0.0), TASK1),
    # D = 0 (preliminary window k..k): the projection removes nothing
    (Method.gp(), SequenceOptions(schedule=SCHEDULE, first_task=1, projection=PreliminaryRuns(2, 2))),
    (Method.lamol(0.0), SequenceOptions(schedule=SCHEDULE, first_task=1, pseudo_ratio=0.0)),
], ids=["REPLAY(0)", "EWC(0)", "MIX(0)", "GP(D=0)", "LAMOL(0), no pseudo-samples"])
def test_zero_strength_methods_are_seq_bit_for_bit(method, options, after_task0, tiny_tokenizer, two_tasks):
    seq, other = after_task0(), after_task0()
    run_sequence(seq, tiny_tokenizer, two_tasks, Method.seq(), FAST, seed=0, options=TASK1)
    run_sequence(other, tiny_tokenizer, two_tasks, method, FAST, seed=0, options=options)
    changed = [n for n, p in seq.state_dict().items() if not torch.equal(p, other.state_dict()[n])]
    assert not changed


def test_ewc_keeps_one_running_fisher_over_three_tasks(make_llama, tiny_tokenizer, two_tasks, monkeypatch):
    """After task t the penalty's Fisher is (F_t + t·F_old)/(t + 1), anchored at the end of task t."""
    tasks = [*two_tasks, Task("task2", two_tasks[1].train[:12], {"train": two_tasks[1].train[:12]})]
    fishers, penalties = [], []
    real_fisher, real_init = runner_module.batch_fisher, EwcPenalty.__init__

    def spy_fisher(model, tokenizer, records, **kwargs):
        fishers.append(real_fisher(model, tokenizer, records, **kwargs))
        return fishers[-1]

    def spy_init(self, terms, lam):
        penalties.append(list(terms))
        real_init(self, terms, lam)

    monkeypatch.setattr(runner_module, "batch_fisher", spy_fisher)
    monkeypatch.setattr(EwcPenalty, "__init__", spy_init)
    model = make_llama()
    result = run_sequence(model, tiny_tokenizer, tasks, Method.ewc(10.0), FAST, seed=0, options=RUN)
    assert len(fishers) == 2 and [len(p) for p in penalties] == [1, 1]  # tasks 1 and 2 are penalized
    assert penalties[0][0] is fishers[0]
    second = penalties[1][0]
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(second.fisher[name], (fishers[1].fisher[name] + fishers[0].fisher[name]) / 2)
    assert torch.equal(second.anchor[name], fishers[1].anchor[name])
    assert result.fisher_sums[1] == pytest.approx(second.total())


def test_lamol_mixes_pseudo_samples_in_and_adds_its_language_model_term(after_task0, tiny_tokenizer, two_tasks,
                                                                        monkeypatch):
    import spurious_diag.continual.lamol as lamol_module

    crafted = [{"prompt": "What is the birth city of Ann Lee?\nAnswer:", "completion": " Paris"}]
    asked, seen, terms = [], [], []
    monkeypatch.setattr(runner_module, "generate_pseudo_samples",
                        lambda model, tokenizer, count, *, seed: (asked.append(count) or crafted, count))
    real_train, real_loss = engine_module.train_model, lamol_module.LamolLoss.__call__

    def spy_train(model, tokenizer, records, *args, **kwargs):
        seen.append(list(records))
        return real_train(model, tokenizer, records, *args, **kwargs)

    def spy_loss(self, model, extras):
        terms.append(sorted(extras))
        return real_loss(self, model, extras)

    monkeypatch.setattr(engine_module, "train_model", spy_train)
    monkeypatch.setattr(lamol_module.LamolLoss, "__call__", spy_loss)
    run_sequence(after_task0(), tiny_tokenizer, two_tasks, Method.lamol(0.25), FAST, seed=0, options=TASK1)
    n_task1 = len(two_tasks[1].train)
    assert asked == [math.ceil(0.2 * n_task1)]
    assert seen[0] == [*two_tasks[1].train, *crafted]
    assert len(terms) == FAST.steps and all(t == ["lm_attention_mask", "lm_input_ids", "lm_labels"] for t in terms)


def test_gp_passes_its_projection_rule_on(after_task0, tiny_tokenizer, two_tasks, monkeypatch):
    import spurious_diag.continual.projection as projection_module

    rules = []
    real_init = projection_module.GradientProjector.__init__

    def spy(self, directions, rule="exact"):
        rules.append(rule)
        real_init(self, directions, rule)

    monkeypatch.setattr(projection_module.GradientProjector, "__init__", spy)
    options = SequenceOptions(schedule=SCHEDULE, first_task=1, projection=PreliminaryRuns(1, 2, rule="official"))
    run_sequence(after_task0(), tiny_tokenizer, two_tasks, Method.gp(), FAST, seed=0, options=options)
    assert rules == ["official"]


def test_a_given_start_evaluation_is_step_0_and_changes_nothing_else(make_llama, tiny_tokenizer, two_tasks):
    """Task 0's evaluation at its end, reused as Task 1's step 0, equals scoring that model again."""
    from spurious_diag.continual.evaluation import SequenceEvaluator, start_evaluation

    model = make_llama()
    task0 = run_sequence(model, tiny_tokenizer, two_tasks, Method.seq(), FAST, seed=0,
                         options=SequenceOptions(schedule=SCHEDULE, last_task=0))
    state = {name: t.clone() for name, t in model.state_dict().items()}
    end = int(task0.points.query("point == 'end'")["step"].iloc[0])
    sets = SequenceEvaluator(tiny_tokenizer, two_tasks).sets()
    given = start_evaluation(task0.curve, task0.per_attribute, sets, task_index=0, step=end)
    assert given is not None and len(given[0]) == 3 and len(given[1]) == 3 * 6  # 3 sets × 6 attributes

    def task1(evaluation):
        fresh = make_llama()
        fresh.load_state_dict(state)
        calls = []
        real = SequenceEvaluator.full

        def counting(self, m):
            calls.append(1)
            return real(self, m)

        SequenceEvaluator.full = counting
        try:
            result = run_sequence(fresh, tiny_tokenizer, two_tasks, Method.seq(), FAST, seed=0,
                                  options=SequenceOptions(schedule=SCHEDULE, first_task=1, start_evaluation=evaluation))
        finally:
            SequenceEvaluator.full = real
        return result, len(calls)

    scored, n_scored = task1(None)
    reused, n_reused = task1(given)
    assert n_reused == n_scored - 1  # step 0 is not scored again
    assert scored.curve.equals(reused.curve)
    assert scored.per_attribute.equals(reused.per_attribute)


def test_a_start_evaluation_of_other_sets_is_refused(after_task0, tiny_tokenizer, two_tasks):
    from spurious_diag.continual.evaluation import start_evaluation
    from spurious_diag.errors import UsageError

    first = run_sequence(after_task0(), tiny_tokenizer, two_tasks, Method.seq(), FAST, seed=0, options=TASK1)
    # The end of Task 1 holds Task 0's and Task 1's sets; a run that also scores a "val" of Task 1 wants more.
    assert start_evaluation(first.curve, first.per_attribute, [("task0", "test"), ("task1", "val")],
                            task_index=1, step=12) is None
    assert start_evaluation(first.curve, first.per_attribute, [("task0", "test")], task_index=1, step=5) is None
    only_test = start_evaluation(first.curve, first.per_attribute, [("task0", "test")], task_index=1, step=12)
    with pytest.raises(UsageError, match="sequence's sets"):
        run_sequence(after_task0(), tiny_tokenizer, two_tasks, Method.seq(), FAST, seed=0,
                     options=SequenceOptions(schedule=SCHEDULE, first_task=1, start_evaluation=only_test))
