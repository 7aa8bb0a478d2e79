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

import functools
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _alternate import alternate, models_and_records, parse_args, relative_gap, train_once  # noqa: E402

OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")


def main() -> None:
    args = parse_args(__doc__, steps=20, what="optimizer")
    started = time.perf_counter()
    models, records = models_and_records(args.tiny_only, args.threads)
    print(f"train_model, {args.steps} steps of batch 8 (Biography QA), {args.threads} thread(s), "
          f"{args.repeats} runs per optimizer, alternated; in-process")
    print(f"{'model':<30}{'fused s/step':>14}{'per-tensor s/step':>19}{'per-tensor / fused':>20}"
          f"{'|fused - per-tensor| / |update|':>33}")
    for label, model_dir in models:
        runs = {o: functools.partial(train_once, model_dir, records, steps=args.steps, optimizer=o) for o in OPTIMIZERS}
        best, weights = alternate(runs, args.repeats)
        gap = relative_gap(model_dir, weights[OPTIMIZERS[0]], weights[OPTIMIZERS[1]])
        print(f"{label:<30}{best[OPTIMIZERS[0]]:>14.3f}{best[OPTIMIZERS[1]]:>19.3f}"
              f"{best[OPTIMIZERS[1]] / best[OPTIMIZERS[0]]:>20.2f}{gap:>33.2e}")
    print("(s/step: the best of the repeats; the update: per-tensor's trained weights minus the start, "
          "L2 over all tensors)")
    print(f"wall time {time.perf_counter() - started:.0f} s (in-process, start-up included)")


if __name__ == "__main__":
    main()
