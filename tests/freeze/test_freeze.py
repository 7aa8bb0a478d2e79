"""freeze_bottom_layers by exact block index; frozen tensors bit-identical after real AdamW steps."""

import pytest
import torch

from spurious_diag.errors import UsageError
from spurious_diag.freeze import FreezeCallback, assert_frozen, freeze_bottom_layers, verify_frozen
from spurious_diag.errors import FrozenWeightsChangedError


def _blocks(names):
    return sorted({int(n.split(".")[2]) for n in names if ".layers." in n or ".h." in n})


def test_twelve_blocks_n2_freezes_exactly_embeddings_and_blocks_0_1(make_model):
    model = make_model("llama", num_layers=12)
    report = freeze_bottom_layers(model, 2)
    assert _blocks(report.frozen) == [0, 1]  # not 10, 11
    assert "model.embed_tokens.weight" in report.frozen
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == set(report.frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if ".layers.1" in n and ".layers.1." not in n)
    total = sum(p.numel() for p in model.parameters())
    assert report.total_params == total
    assert report.trainable_fraction == pytest.approx(sum(p.numel() for p in model.parameters() if p.requires_grad) / total)


def test_freeze_zero_is_embeddings_only_and_seq_is_nothing(make_model):
    model = make_model("gpt2", num_layers=3)
    assert set(freeze_bottom_layers(model, 0).frozen) == {"transformer.wte.weight", "transformer.wpe.weight"}
    assert freeze_bottom_layers(model, 0, embeddings=False).frozen == []
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(UsageError):
        freeze_bottom_layers(model, 4)


def test_tied_head_is_frozen_and_reported(make_model):
    model = make_model("gemma3")  # ties lm_head to embed_tokens
    report = freeze_bottom_layers(model, 1)
    assert report.tied == {"model.embed_tokens.weight": ["lm_head.weight"]}
    assert not model.lm_head.weight.requires_grad
    assert "lm_head.weight" in report.summary()


def _train(model, tmp_path, steps=4, callbacks=(), weight_decay=0.1):
    from transformers import Trainer, TrainingArguments

    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": (ids := torch.randint(0, 100, (12,), generator=g)), "labels": ids.clone()} for _ in range(16)]
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=1e-2, weight_decay=weight_decay, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=True, seed=0, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data, callbacks=list(callbacks)).train()


def test_frozen_bit_identical_after_adamw_with_weight_decay(make_model, tmp_path):
    model = make_model("llama", num_layers=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = freeze_bottom_layers(model, 2)
    _train(model, tmp_path)
    check = assert_frozen(before, model, report.frozen)
    assert len(check.identical) == len(report.frozen) > 0
    others = set(before) - set(report.frozen)
    assert set(check.trainable_changed) == {n for n in others if not n.endswith("rotary_emb.inv_freq")}


def test_zeroed_gradients_are_not_enough(make_model):
    """Why frozen tensors must leave the optimizer: zero gradients + weight decay still move them."""
    model = make_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ids = torch.randint(0, 100, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    model.model.embed_tokens.weight.grad.zero_()
    opt.step()
    check = verify_frozen(before, model, ["model.embed_tokens.weight"])
    assert check.changed == ["model.embed_tokens.weight"]
    with pytest.raises(FrozenWeightsChangedError):
        assert_frozen(before, model, ["model.embed_tokens.weight"])


def test_callback_freezes_at_the_task_boundary(make_model, tmp_path):
    """Freezing at step 3 of 6: frozen tensors move before the boundary and never after."""
    from transformers import TrainerCallback

    model = make_model("llama", num_layers=4)
    snapshots = {}

    class Snapshot(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kw):
            snapshots[state.global_step] = {k: v.clone() for k, v in model.state_dict().items()}

    freeze = FreezeCallback(1, at_step=3)
    _train(model, tmp_path, steps=6, callbacks=[freeze, Snapshot()])
    assert freeze.frozen_at == 3
    frozen = freeze.report.frozen
    assert verify_frozen(snapshots[0], snapshots[3], frozen).changed  # trained before the boundary
    assert verify_frozen(snapshots[3], model, frozen).ok  # bit-identical after it
    assert verify_frozen(snapshots[3], model, frozen).trainable_changed
