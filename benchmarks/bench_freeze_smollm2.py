"""Freeze-and-train on SmolLM2-135M: trainable fraction and step time, Freeze(6) vs full fine-tuning.

Both runs use ``spurious-diag train``'s engine on the same generated prompt/completion data
(batch 8, ~64 tokens), one thread, side by side in one process run; the frozen run's
embeddings + blocks 0–5 are then checked bit-identical against the model on disk.

    python benchmarks/bench_freeze_smollm2.py [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

from _models import smollm2_hf_dir  # noqa: E402


def write_data(path: str, n: int = 64) -> None:
    """Arithmetic questions padded with a fixed instruction to ~64 tokens each."""
    preamble = ("You are a careful assistant. Read the question, think about the numbers involved, "
                "and answer with the number only, with no extra words.")
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            a, b = 3 + i % 17, 5 + (7 * i) % 23
            f.write(json.dumps({"prompt": f"{preamble}\nQuestion: what is {a} plus {b}?\nAnswer:",
                                "completion": f" {a + b}"}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from spurious_diag.freeze.verify import verify_frozen
    from spurious_diag.training.finetune import finetune
    from spurious_diag.training.settings import FinetuneOptions, TrainSettings

    model_dir = str(smollm2_hf_dir())
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "train.jsonl")
        write_data(data)
        runs = {}
        for label, freeze in (("full fine-tuning (SEQ)", None), ("Freeze(6): embeddings + blocks 0-5", 6)):
            out = os.path.join(work, f"out-{freeze}")
            os.makedirs(out)
            cfg = FinetuneOptions(settings=TrainSettings(steps=args.steps, lr=1e-5, batch_size=8, weight_decay=0.1),
                                  freeze_layers=freeze, seed=0)
            runs[label] = (finetune(model_dir, data, out, cfg), out)
        print(f"{'run':<38}{'trainable':>12}{'s/step':>9}{'final loss':>12}")
        for label, (res, _) in runs.items():
            frac = res.freeze.trainable_fraction if res.freeze else 1.0
            print(f"{label:<38}{frac:>11.1%}{res.seconds_per_step:>9.2f}{res.final_loss:>12.4f}")
        (full, _), (frozen, out) = runs.values()
        check = verify_frozen(model_dir, out, frozen.freeze.frozen)
        print(f"step time, frozen / full: {frozen.seconds_per_step / full.seconds_per_step:.2f}")
        print(f"tied and frozen with the embedding: {frozen.freeze.tied}")
        print(f"bit-identity on disk: {check.summary()} -> {'PASS' if check.ok else 'FAIL'}")


if __name__ == "__main__":
    main()
