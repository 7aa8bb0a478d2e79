"""AdamW's two implementations in the training engine: fused (the default) against per-tensor.

``train_model`` on SmolLM2-135M-Instruct (and the shipped 4-block Biography model), the same
Biography QA batches (batch 8), each optimizer from the same start, in one process run and
alternated (fused, per-tensor, fused, per-tensor) so that machine drift hits both alike. Prints the
seconds per step (``TrainingResult.seconds_per_step``: the Trainer's train runtime over its steps),
their ratio, and how far apart the two trained models end, relative to how far training moved them
(the same update up to float rounding: a small fraction).

    python benchmarks/bench_optimizer.py [--steps 20] [--threads 1] [--repeats 2] [--tiny-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _models import smollm2_hf_dir  # noqa: E402

OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")


def _models() -> list[tuple[str, str]]:
    from spurious_diag.biography.pretrain import shipped_base_dir

    return [("Biography 4 blocks (shipped)", os.fspath(shipped_base_dir())),
            ("SmolLM2-135M-Instruct", os.fspath(smollm2_hf_dir()))]


def train_once(model_dir: str, records: list, optimizer: str, steps: int) -> tuple[float, dict]:
    """Seconds per step and the trained weights of one run from ``model_dir``."""
    from spurious_diag.probes.models import load_causal_lm, load_tokenizer_for
    from spurious_diag.training.settings import TrainSettings
    from spurious_diag.training.trainer import train_model

    model, tokenizer = load_causal_lm(model_dir), load_tokenizer_for(model_dir)  # Trainer sets train mode
    settings = TrainSettings(steps=steps, lr=5e-5, batch_size=8, optimizer=optimizer)
    result = train_model(model, tokenizer, records, settings, seed=0)
    return result.seconds_per_step, {k: v.detach().clone() for k, v in model.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each optimizer per model, alternated")
    parser.add_argument("--tiny-only", action="store_true", help="only the 4-block model (seconds)")
    args = parser.parse_args()
    started = time.perf_counter()
    import torch
    from safetensors.torch import load_file

    from spurious_diag.biography import build_scenario

    torch.set_num_threads(args.threads)
    records = build_scenario(seed=0).qa("task1")
    print(f"train_model, {args.steps} steps of batch 8 (Biography QA), {args.threads} thread(s), "
          f"{args.repeats} runs per optimizer, alternated; in-process")
    print(f"{'model':<30}{'fused s/step':>14}{'per-tensor s/step':>19}{'per-tensor / fused':>20}"
          f"{'|fused - per-tensor| / |update|':>33}")
    for label, model_dir in _models()[:1] if args.tiny_only else _models():
        times: dict[str, list[float]] = {o: [] for o in OPTIMIZERS}
        weights: dict[str, dict] = {}
        for _ in range(args.repeats):
            for optimizer in OPTIMIZERS:
                seconds, weights[optimizer] = train_once(model_dir, records, optimizer, args.steps)
                times[optimizer].append(seconds)
        start = load_file(os.path.join(model_dir, "model.safetensors"))
        fused, plain = weights[OPTIMIZERS[0]], weights[OPTIMIZERS[1]]
        names = [k for k in start if k in fused]
        gap = sum(float((fused[k] - plain[k]).double().norm() ** 2) for k in names) ** 0.5
        update = sum(float((plain[k].double() - start[k].double()).norm() ** 2) for k in names) ** 0.5
        best = {o: min(t) for o, t in times.items()}
        print(f"{label:<30}{best[OPTIMIZERS[0]]:>14.3f}{best[OPTIMIZERS[1]]:>19.3f}"
              f"{best[OPTIMIZERS[1]] / best[OPTIMIZERS[0]]:>20.2f}{gap / update:>33.2e}")
    print("(s/step: the best of the repeats; the update: per-tensor's trained weights minus the start, "
          "L2 over all tensors)")
    print(f"wall time {time.perf_counter() - started:.0f} s (in-process, start-up included)")


if __name__ == "__main__":
    main()
