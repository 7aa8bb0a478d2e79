"""Scoring speed against the evaluation batch size (``score_records``, the exact-match evaluation).

The same Biography QA records scored by the shipped 4-block model (960 records) and by
SmolLM2-135M-Instruct (240 records), at each batch size in turn, the sizes interleaved over
``--repeats`` rounds so that machine drift hits all alike; in one process run, one thread by
default (as the comparison's workers). Prints the best seconds of each size and its ratio to the
library's default (``EVAL_BATCH_SIZE``), and checks that every size gives the same scores.

    python benchmarks/bench_eval_batch.py [--sizes 256,128,64,32] [--repeats 2] [--threads 1] [--tiny-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _models import smollm2_hf_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,128,64,32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny-only", action="store_true", help="only the 4-block model (seconds)")
    args = parser.parse_args()
    started = time.perf_counter()
    import torch

    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.pretrain import shipped_base_dir
    from spurious_diag.probes.models import load_causal_lm, load_tokenizer_for
    from spurious_diag.training.evaluate import EVAL_BATCH_SIZE, score_records

    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    records = list(build_scenario(seed=0).qa("task0_test"))
    models = [("Biography 4 blocks (shipped)", shipped_base_dir(), 960)]
    if not args.tiny_only:
        models.append(("SmolLM2-135M-Instruct", smollm2_hf_dir(), 240))
    print(f"score_records on Biography QA, {args.threads} thread(s), best of {args.repeats} interleaved rounds; "
          f"in-process; ratio = seconds / seconds at the default {EVAL_BATCH_SIZE}")
    print(f"{'model':<30}{'records':>8}" + "".join(f"{f'bs {s}':>16}" for s in sizes) + f"{'same scores':>13}")
    for label, model_dir, n in models:
        model, tokenizer = load_causal_lm(model_dir), load_tokenizer_for(model_dir)
        subset = records[:n]
        seconds: dict[int, float] = {s: float("inf") for s in sizes}
        scores = {}
        for _ in range(args.repeats):
            for size in sizes:
                t = time.perf_counter()
                scores[size] = score_records(model, tokenizer, subset, batch_size=size)
                seconds[size] = min(seconds[size], time.perf_counter() - t)
        same = all(scores[s]["exact_match"].equals(scores[sizes[0]]["exact_match"]) for s in sizes)
        reference = seconds.get(EVAL_BATCH_SIZE)
        cells = "".join(f"{f'{seconds[s]:.2f}s' + (f' ({seconds[s] / reference:.2f})' if reference else ''):>16}"
                        for s in sizes)
        print(f"{label:<30}{len(subset):>8}{cells}{str(same):>13}")
    print(f"wall time {time.perf_counter() - started:.0f} s (in-process, start-up included)")


if __name__ == "__main__":
    main()
