import functools

import pytest
import torch

from spurious_diag.errors import InvalidDataError
from spurious_diag.training.callbacks import EvaluateEveryCallback
from spurious_diag.training.records import IGNORE_INDEX, EncodedExample, encode_qa, encode_records, encode_text
from spurious_diag.training.settings import TrainSettings
from spurious_diag.training.trainer import train_model


def test_qa_loss_is_on_completion_and_eos_only(scenario, tokenizer):
    record = scenario.qa("task0_train")[0]
    example = encode_qa(tokenizer, record.prompt, record.completion)
    prompt_ids = tokenizer(record.prompt).input_ids
    answer_ids = tokenizer(record.completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    assert list(example.input_ids) == prompt_ids + answer_ids
    assert list(example.labels) == [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    assert example.input_ids[0] == tokenizer.bos_token_id


def test_text_loss_is_on_every_token(scenario, tokenizer):
    example = encode_text(tokenizer, scenario.pretraining_texts()[0])
    assert example.labels == example.input_ids
    assert example.input_ids[0] == tokenizer.bos_token_id and example.input_ids[-1] == tokenizer.eos_token_id


def test_encode_records_dispatches_and_rejects(tokenizer):
    qa, text = encode_records(tokenizer, [{"prompt": "Where?\nAnswer:", "completion": " Boston"}, {"text": "Boston."}])
    assert IGNORE_INDEX in qa.labels and IGNORE_INDEX not in text.labels
    with pytest.raises(InvalidDataError):
        encode_records(tokenizer, [{"question": "x"}])


def test_training_lowers_loss_and_calls_back(scenario, tokenizer, make_tiny_llama):
    model = make_tiny_llama()
    records = scenario.qa("task0_train")[:24]
    evaluations = EvaluateEveryCallback(5, lambda m: {"training": float(m.training)})
    settings = TrainSettings(steps=20, lr=3e-3, batch_size=8, schedule="cosine", warmup_steps=2, logging_steps=5)
    result = train_model(model, tokenizer, records, settings, seed=0, callbacks=[evaluations])
    assert result.steps == 20 and list(result.losses["step"]) == [5, 10, 15, 20]
    assert result.losses["loss"].iloc[-1] < result.losses["loss"].iloc[0]
    assert list(evaluations.frame()["step"]) == [0, 5, 10, 15, 20]
    assert set(evaluations.frame()["training"]) == {0.0}  # evaluated in eval mode
    assert not model.training


def test_same_seed_same_weights_and_frozen_tensors_do_not_move(scenario, tokenizer, make_tiny_llama):
    records = [EncodedExample(e.input_ids, e.labels) for e in encode_records(tokenizer, scenario.qa("task1")[:16])]
    models = [make_tiny_llama(), make_tiny_llama()]
    for model in models:
        model.model.embed_tokens.weight.requires_grad_(False)
        before = model.model.embed_tokens.weight.detach().clone()
        train_model(model, tokenizer, records, TrainSettings(steps=4, lr=1e-2, batch_size=4, weight_decay=0.1), seed=5)
        assert torch.equal(model.model.embed_tokens.weight, before)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(models[0].lm_head.weight, make_tiny_llama().lm_head.weight)


def test_fused_and_per_tensor_adamw_take_the_same_steps(scenario, tokenizer, make_tiny_llama, monkeypatch):
    """The default fused AdamW is the per-tensor one up to float rounding, and is the one used."""
    records = scenario.qa("task1")[:16]
    fused_flags = []
    step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        fused_flags.append(bool(self.defaults.get("fused")))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    start = make_tiny_llama()
    trained = {}
    for optimizer in ("adamw_torch_fused", "adamw_torch"):
        fused_flags.clear()
        model = make_tiny_llama()
        train_model(model, tokenizer, records, TrainSettings(steps=4, lr=1e-3, batch_size=4, weight_decay=0.1,
                                                             optimizer=optimizer), seed=3)
        assert set(fused_flags) == {optimizer == "adamw_torch_fused"}
        trained[optimizer] = model
    assert TrainSettings().optimizer == "adamw_torch_fused"
    for (name, a), b, s in zip(trained["adamw_torch_fused"].named_parameters(),
                               trained["adamw_torch"].parameters(), start.parameters()):
        moved = float((b - s).detach().abs().max())
        assert moved > 0, name
        # Per element, the same update to a small fraction of how far 4 steps moved the tensor.
        assert float((a - b).detach().abs().max()) <= 1e-3 * moved + 1e-7, name


def test_progress_bar_prints_no_log_dicts(scenario, tokenizer, make_tiny_llama, capsys, caplog):
    """With progress on, the bar shows; the losses go to logging, not to stdout as dicts."""
    caplog.set_level("INFO", logger="spurious_diag.training.trainer")
    train_model(make_tiny_llama(), tokenizer, scenario.qa("task0_train")[:8],
                TrainSettings(steps=4, lr=1e-3, batch_size=4, logging_steps=2), seed=0, progress=True)
    printed = capsys.readouterr()
    assert "'loss'" not in printed.out + printed.err
    assert "4/4" in printed.err  # the tqdm bar reached the last step
    assert any("loss" in r.getMessage() for r in caplog.records)



@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox", "gemma3", "phi3", "gpt2"])
def test_answer_head_loss_equals_the_models_own(arch):
    """The head at labelled positions only: the model's own loss and gradients, with
    ``num_items_in_batch`` as Trainer passes it; a model without ``ForCausalLM`` loss keeps its path.
    (The weights are float64, but transformers' loss takes the logits to float32: float32 tolerances.)"""
    from transformers import AutoModelForCausalLM

    from tests.conftest import tiny_config
    from spurious_diag.training.trainer import _answer_head_kwargs

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(arch)).double().eval()  # eval: no dropout draws
    ids = torch.randint(3, 100, (3, 10))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 7:], labels[1, 6:9], labels[2, 8:] = ids[0, 7:], ids[1, 6:9], ids[2, 8:]  # ragged answers
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    kwargs = _answer_head_kwargs(model, inputs)
    if arch == "gpt2":  # its loss_type is unset: the model's own path
        assert kwargs == {}
        return
    assert kwargs["logits_to_keep"].tolist() == [5, 6, 7, 8]  # positions that predict a labelled token
    n = int((labels[:, 1:] != IGNORE_INDEX).sum())
    params = [p for p in model.parameters()]
    own = model(**inputs, num_items_in_batch=n).loss
    fast = model(**inputs, num_items_in_batch=n, **kwargs).loss
    assert fast.item() == pytest.approx(own.item(), rel=1e-6)
    for a, b in zip(torch.autograd.grad(own, params, allow_unused=True),
                    torch.autograd.grad(fast, params, allow_unused=True)):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
    every = {**inputs, "labels": ids}  # every position labelled: nothing to leave out
    assert _answer_head_kwargs(model, every) == {}


def test_training_computes_the_head_at_answer_positions(scenario, tokenizer, make_tiny_llama, monkeypatch):
    """train_model's QA steps run the head on the answer positions alone."""
    kept = []
    model = make_tiny_llama()
    forward = type(model).forward

    @functools.wraps(forward)  # (the signature stays the model's: it is what decides the path)
    def spy(self, *args, **kwargs):
        kept.append(kwargs.get("logits_to_keep"))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    train_model(model, tokenizer, scenario.qa("task1")[:8], TrainSettings(steps=2, lr=1e-3, batch_size=4), seed=0)
    assert len(kept) == 2 and all(isinstance(k, torch.Tensor) and k.numel() > 0 for k in kept)
