"""The training engine's output head at the answer positions only, against the head at every position.

``train_model`` on SmolLM2-135M-Instruct (and the shipped 4-block Biography model), the same
Biography QA batches (batch 8), each path from the same start, in one process run and alternated
(answer positions, every position, answer positions, ...) so that machine drift hits both alike.
"Every position" is the model's own loss path (``_answer_head_kwargs`` switched off). Prints the
seconds per step (``TrainingResult.seconds_per_step``: the Trainer's train runtime over its
steps), their ratio, and how far apart the two trained models end, relative to how far training
moved them (the same loss and gradients: float rounding at most).

    python benchmarks/bench_answer_head.py [--steps 12] [--threads 1] [--repeats 2] [--tiny-only]
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(__file__))

from _alternate import alternate, models_and_records, parse_args, relative_gap, train_once  # noqa: E402

PATHS = ("answer positions", "every position")


@contextlib.contextmanager
def head_path(path: str) -> Iterator[None]:
    """The training engine with ``path``'s head (the default is the answer positions)."""
    from spurious_diag.training import trainer

    if path == PATHS[0]:
        yield
        return
    kept = trainer._answer_head_kwargs
    trainer._answer_head_kwargs = lambda model, inputs: {}
    try:
        yield
    finally:
        trainer._answer_head_kwargs = kept


def train_with(path: str, model_dir: str, records: list, steps: int) -> tuple[float, dict]:
    """:func:`_alternate.train_once` with ``path``'s head."""
    with head_path(path):
        return train_once(model_dir, records, steps=steps)


def main() -> None:
    args = parse_args(__doc__, steps=12, what="path")
    started = time.perf_counter()
    models, records = models_and_records(args.tiny_only, args.threads)
    print(f"train_model, {args.steps} steps of batch 8 (Biography QA), {args.threads} thread(s), "
          f"{args.repeats} runs per path, alternated; in-process (best run of each)")
    print(f"{'model':<30}{'answer s/step':>15}{'every s/step':>14}{'every / answer':>16}"
          f"{'|answer - every| / |update|':>29}")
    for label, model_dir in models:
        runs = {p: functools.partial(train_with, p, model_dir, records, args.steps) for p in PATHS}
        best, weights = alternate(runs, args.repeats)
        gap = relative_gap(model_dir, weights[PATHS[0]], weights[PATHS[1]])
        print(f"{label:<30}{best[PATHS[0]]:>15.3f}{best[PATHS[1]]:>14.3f}{best[PATHS[1]] / best[PATHS[0]]:>16.2f}"
              f"{gap:>29.2e}")
    print(f"wall time {time.perf_counter() - started:.0f} s (in-process, start-up included)")


if __name__ == "__main__":
    main()
