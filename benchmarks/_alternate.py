"""Two ways of training the same model, timed alternately in one process (bench_optimizer.py,
bench_answer_head.py): their flags, models and records, seconds per step, and how far apart the
trained weights end."""

from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence

# One way of training: () -> (seconds per step, the trained state dict).
Run = Callable[[], tuple[float, dict]]


def train_once(model_dir: str, records: Sequence, **settings: object) -> tuple[float, dict]:
    """``train_model`` from ``model_dir`` on ``records`` (batch 8, lr 5e-5, seed 0, ``settings``
    overriding ``TrainSettings``): its seconds per step and trained weights."""
    from spurious_diag.probes.models import load_causal_lm, load_tokenizer_for
    from spurious_diag.training.settings import TrainSettings
    from spurious_diag.training.trainer import train_model

    model, tokenizer = load_causal_lm(model_dir), load_tokenizer_for(model_dir)  # Trainer sets train mode
    result = train_model(model, tokenizer, list(records), TrainSettings(**{"lr": 5e-5, "batch_size": 8, **settings}),
                         seed=0)
    return result.seconds_per_step, {k: v.detach().clone() for k, v in model.state_dict().items()}


def alternate(runs: dict[str, Run], repeats: int) -> tuple[dict[str, float], dict[str, dict]]:
    """Each run ``repeats`` times, alternated (a, b, a, b, ...) so that machine drift hits all alike:
    the best seconds per step of each, and each one's last trained weights."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    weights: dict[str, dict] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds, weights[name] = run()
            times[name].append(seconds)
    return {name: min(t) for name, t in times.items()}, weights


def relative_gap(model_dir: str, a: dict, b: dict) -> float:
    """‖a − b‖ / ‖b − start‖ over the start's tensors (float64): how far apart two trainings end,
    relative to how far training moved the weights."""
    from safetensors.torch import load_file

    start = load_file(os.path.join(model_dir, "model.safetensors"))
    names = [k for k in start if k in a]
    gap = sum(float((a[k].double() - b[k].double()).norm() ** 2) for k in names) ** 0.5
    update = sum(float((b[k].double() - start[k].double()).norm() ** 2) for k in names) ** 0.5
    return gap / update


def parse_args(doc: str, steps: int, what: str) -> argparse.Namespace:
    """The alternating benchmarks' flags: --steps (default ``steps``), --threads, --repeats (runs of
    each ``what`` per model) and --tiny-only; ``doc``'s first line describes the command."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help=f"runs of each {what} per model, alternated")
    parser.add_argument("--tiny-only", action="store_true", help="only the 4-block model (seconds)")
    return parser.parse_args()


def models_and_records(tiny_only: bool, threads: int) -> tuple[list[tuple[str, str]], list]:
    """(label, model dir) of the shipped 4-block model and, unless ``tiny_only``, SmolLM2; and the
    Biography Task 1 QA records they train on. Sets torch to ``threads`` threads."""
    import torch

    from _models import smollm2_hf_dir
    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.pretrain import shipped_base_dir

    torch.set_num_threads(threads)
    models = [("Biography 4 blocks (shipped)", os.fspath(shipped_base_dir()))]
    if not tiny_only:
        models.append(("SmolLM2-135M-Instruct", os.fspath(smollm2_hf_dir())))
    return models, build_scenario(seed=0).qa("task1")
