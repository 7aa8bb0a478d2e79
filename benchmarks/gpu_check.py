"""GPU check: the audit, diagnose and train on CUDA against the CPU path, and a freeze-and-train step on CUDA.

Runs where a GPU exists (see gpu_check.sh); needs only torch, transformers, safetensors, pandas
and tqdm, nothing from a registry. Builds a seeded 3-checkpoint chain from the SmolLM2-135M
config (random init; full-rank updates with a 1/i spectrum, the second correlated with the
first), audits it on CPU and on CUDA (random test matrices drawn on the CPU, so both see the
same), and prints times and the largest angle difference (target: within 0.1°). Then times
Freeze(6) training steps on CUDA against the CPU and checks the frozen tensors bit-identical.
Last, on the shipped Biography model: ``spurious-diag train --freeze-layers 1 --device cuda``
learns Task 0 against the same on the CPU (final loss, held-out exact match, frozen tensors
verified bit-identical by the command itself), then ``diagnose`` (accuracy, recovery, grafting)
with ``--device cuda`` (float32 and bfloat16) against the CPU (accuracy differences printed).
``--cpu-dry-run`` runs the CPU half alone, to test the script where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import pandas as pd
import torch


def smollm2_config():
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                       num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True,
                       rms_norm_eps=1e-5, rope_theta=100000.0)


def build_chain(root: str, seed: int = 0) -> list[str]:
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(smollm2_config())
    paths = []
    g = torch.Generator().manual_seed(seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    prev_u = {}
    for step in range(3):
        if step:
            for name, w in state.items():
                if w.dim() != 2 or name == "lm_head.weight":
                    continue
                m, n = w.shape
                k = min(m, n, 256)
                u = torch.linalg.qr(torch.randn(m, k, generator=g)).Q
                if name in prev_u:
                    u = torch.linalg.qr(prev_u[name] + 0.8 * u).Q
                prev_u[name] = u
                v = torch.linalg.qr(torch.randn(n, k, generator=g)).Q
                s = torch.arange(1, k + 1, dtype=torch.float32).reciprocal() * 1e-3 * float(w.norm())
                state[name] = w + (u * s) @ v.T
        model.load_state_dict(state)
        path = os.path.join(root, f"step{step}")
        model.save_pretrained(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="no GPU: run the CPU half of the diagnose/train check, to test this script")
    args = parser.parse_args()
    if args.cpu_dry_run:
        with tempfile.TemporaryDirectory() as root:
            diagnose_and_train_check(root, gpu=False, task0_steps=20)
        return
    from spurious_diag import AuditOptions, audit

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: this check needs a GPU machine")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CPU threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        chain = build_chain(root)
        print(f"chain built in {time.perf_counter() - t:.1f}s")
        timings, frames = {}, {}
        for device in ("cpu", "cuda"):
            t = time.perf_counter()
            frames[device] = audit(chain, AuditOptions(rank=16, device=device), progress=False).pairs
            timings[device] = time.perf_counter() - t
        a, b = frames["cpu"].set_index(["update_a", "update_b", "name", "part"]), frames["cuda"].set_index(
            ["update_a", "update_b", "name", "part"])
        diff = (a["angle_mean_deg"] - b.loc[a.index, "angle_mean_deg"]).abs().max()
        diff_min = (a["angle_min_deg"] - b.loc[a.index, "angle_min_deg"]).abs().max()
        print(f"audit, rank 16: CPU {timings['cpu']:.1f}s, CUDA {timings['cuda']:.1f}s "
              f"({timings['cpu'] / timings['cuda']:.1f}x)")
        print(f"largest angle difference CPU vs CUDA: mean {diff:.4f} deg, min {diff_min:.4f} deg "
              f"(target <= 0.1) -> {'PASS' if max(diff, diff_min) <= 0.1 else 'FAIL'}")

        from transformers import AutoModelForCausalLM

        from spurious_diag.freeze.freezing import freeze_bottom_layers
        from spurious_diag.freeze.verify import verify_frozen

        batch = torch.randint(0, 49152, (8, 128), generator=torch.Generator().manual_seed(1))
        for device in ("cpu", "cuda"):
            model = AutoModelForCausalLM.from_pretrained(chain[0], dtype=torch.float32).to(device)
            report = freeze_bottom_layers(model, 6)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.1)
            ids = batch.to(device)
            times = []
            for _ in range(args.train_steps + 1):
                t = time.perf_counter()
                model(input_ids=ids, labels=ids).loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            check = verify_frozen(chain[0], model.cpu(), report.frozen)
            print(f"Freeze(6) step at batch 8x128 on {device}: {min(times[1:]):.3f}s "
                  f"({report.trainable_fraction:.1%} trainable); {check.summary()} -> {'PASS' if check.ok else 'FAIL'}")
        diagnose_and_train_check(root)


def diagnose_and_train_check(root: str, gpu: bool = True, task0_steps: int = 300) -> None:
    """train and diagnose on CUDA against the CPU, on the shipped Biography model (``gpu=False``:
    the CPU half alone, a dry run of this script on a machine without a GPU).

    ``spurious-diag train --freeze-layers 1`` learns Task 0 (QA) from the shipped base on each
    device; the last one trained is BEFORE, and AFTER is BEFORE with noise planted on the
    embeddings and block 0. ``diagnose`` (accuracy, recovery, grafting) then runs on each device.
    """
    from spurious_diag import DiagnoseOptions, RecoverySettings, diagnose
    from spurious_diag.biography.pretrain import load_base_model, shipped_base_dir

    base = load_base_model()
    data = base.scenario()

    def jsonl(name: str, records: list) -> str:
        path = os.path.join(root, name)
        with open(path, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps({"prompt": r.prompt, "completion": r.completion}) + "\n")
        return path

    train, held = jsonl("task0_train.jsonl", data.qa("task0_train")), jsonl("task0_test.jsonl", data.qa("task0_test"))
    before = None
    for device in ("cpu", "cuda") if gpu else ("cpu",):
        out = os.path.join(root, f"train-{device}")
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "spurious_diag", "-q", "train", "--model", str(shipped_base_dir()),
                               "--data", train, "--eval", held, "--freeze-layers", "1", "--steps", str(task0_steps),
                               "--lr", "3e-4", "--batch-size", "32", "--device", device, "--out", out],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            print(f"train on {device}: FAIL (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            continue
        summary = json.loads(open(os.path.join(out, "train_summary.json"), encoding="utf-8").read())
        metrics = pd.read_csv(os.path.join(out, "metrics.csv"))
        print(f"train Task 0 with Freeze(1), {task0_steps} steps on {device}: {wall:.1f}s wall (CLI, start-up "
              f"included), final loss {summary['final_loss']:.4f}, held-out exact match "
              f"{metrics.iloc[-1]['exact_match']:.3f}, frozen tensors bit-identical: {summary['frozen_bit_identical']}")
        before = out
    if before is None:
        return
    from transformers import AutoModelForCausalLM

    after = AutoModelForCausalLM.from_pretrained(before)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a planted "forgetting": noise on the embeddings and block 0
        for name, p in after.named_parameters():
            if "embed" in name or ".layers.0." in name:
                p.add_(0.5 * p.std() * torch.randn(p.shape, generator=g))
    after_dir = os.path.join(root, "after")
    after.save_pretrained(after_dir)
    base.tokenizer.save_pretrained(after_dir)
    old = [{"prompt": r.prompt, "completion": r.completion, "person_id": r.person_id} for r in data.qa("task0_test")]
    results = {}
    runs = [("cpu", "float32")] + ([("cuda", "float32"), ("cuda", "bfloat16")] if gpu else [])
    for device, dtype in runs:
        options = DiagnoseOptions(probes=("recovery", "grafting"), device=device, dtype=dtype, graft_ks=(0, 1, 2),
                                  recovery=RecoverySettings(ns=(50,), steps=20, batch_size=16))
        t = time.perf_counter()
        d = diagnose(before, after_dir, old[:400], base=str(shipped_base_dir()), options=options)
        results[(device, dtype)] = d.evidence
        print(f"diagnose on {device} ({dtype}): {time.perf_counter() - t:.1f}s, acc before {d.evidence['acc_before']:.3f}"
              f" after {d.evidence['acc_after']:.3f}, recovery fraction {d.evidence.get('recovery_fraction', math.nan):.3f}"
              f" (control {d.evidence.get('recovery_control_fraction', math.nan):.3f}), verdict {d.verdict}, "
              f"recommended k {d.recommendation.k}")
    cpu = results[("cpu", "float32")]
    for key in runs[1:]:
        gap = max(abs(results[key][k] - cpu[k]) for k in ("acc_before", "acc_after"))
        print(f"  {key[0]} {key[1]} vs CPU: largest accuracy difference {gap:.3f} "
              f"(float32 target <= 0.01; bfloat16 reported)")

if __name__ == "__main__":
    main()
