"""Freezing under TRL's ``SFTTrainer``: chat-formatted prompt/completion data, loss on the
completion only, and the frozen tensors bit-identical afterwards (the README's five lines)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from spurious_diag import freeze_bottom_layers, verify_frozen
from spurious_diag.biography.pretrain import load_base_model, shipped_base_dir
from spurious_diag.freeze import FreezeCallback

# A minimal chat template (the Biography tokenizer ships none): turns are concatenated, the
# assistant's ends with EOS.
TEMPLATE = ("{% for m in messages %}{{ m['content'] }}{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
            "{% endfor %}")


def _sft(tmp_path, model, callbacks=()):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(shipped_base_dir())
    tokenizer.chat_template = TEMPLATE
    data = load_base_model().scenario()
    records = [{"prompt": [{"role": "user", "content": r.prompt}],
                "completion": [{"role": "assistant", "content": r.completion}]} for r in data.qa("task1")[:32]]
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                     use_cpu=True, report_to="none", save_strategy="no", logging_steps=1, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                         callbacks=list(callbacks))
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.train()
    return batch


@pytest.mark.parametrize("how", ["before the trainer", "callback"])
def test_sft_trainer_leaves_frozen_tensors_bit_identical(tmp_path, how, one_thread):
    model = AutoModelForCausalLM.from_pretrained(shipped_base_dir(), dtype=torch.float32)
    if how == "before the trainer":
        report = freeze_bottom_layers(model, 1)
        batch = _sft(tmp_path, model)
    else:
        callback = FreezeCallback(1)
        batch = _sft(tmp_path, model, [callback])
        report = callback.report
    # completion-only loss: the prompt's tokens are masked, the answer's (and its EOS) are not
    for labels, mask in zip(batch["labels"], batch["attention_mask"]):
        real = labels[mask.bool()]
        assert real[0] == -100 and real[-1] != -100  # the prompt masked, the answer's last token (EOS) trained
    check = verify_frozen(shipped_base_dir(), model, report.frozen)
    assert check.ok and len(check.identical) == len(report.frozen) > 0
    assert check.trainable_changed  # the rest did train
