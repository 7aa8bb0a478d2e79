"""Lazy loading vs ``from_pretrained`` on SmolLM2-135M: time and RssAnon growth, side by side.

Each contender runs in its own fresh subprocess (same imports, same thread count),
so neither inherits the other's allocations. Prints the ratios against the issue's
targets: lazy iteration ≥ 10× faster, RssAnon growth < 2× the largest tensor.

    python benchmarks/bench_load.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _measure import mib  # noqa: E402
from _models import smollm2_hf_dir  # noqa: E402

CHILD = r"""
import json, os, sys, torch
sys.path.insert(0, {bench_dir!r})
torch.set_num_threads(1)
os.environ["HF_HUB_OFFLINE"] = "1"
from _measure import measure
from transformers import AutoModelForCausalLM
from spurious_diag import load_checkpoint
mode, path = {mode!r}, {path!r}
if mode == "lazy":
    with measure() as m:
        ckpt = load_checkpoint(path)
        total = 0.0
        for name in ckpt:
            t = ckpt[name]
            total += float(t.float().sum())  # touch every value
            del t
else:
    with measure() as m:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        unique = {{p.data_ptr(): p for p in model.state_dict().values()}}  # tied head counted once
        total = sum(float(p.float().sum()) for p in unique.values())
print(json.dumps({{"seconds": m.seconds, "growth": m.growth_bytes, "checksum": total}}))
"""


def run_child(mode: str, path: str) -> dict:
    code = CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), mode=mode, path=path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = str(smollm2_hf_dir())

    from spurious_diag import load_checkpoint

    ckpt = load_checkpoint(path)
    largest = max(i.numel * 4 for i in ckpt.infos().values())  # in fp32
    print(f"model: {path}  tensors: {len(ckpt)}  largest tensor (fp32): {mib(largest)}")

    lazy, eager = [], []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        lazy.append(run_child("lazy", path))
        eager.append(run_child("eager", path))
    best = lambda rs, k: min(r[k] for r in rs)  # noqa: E731
    assert abs(lazy[0]["checksum"] - eager[0]["checksum"]) < 1e-3 * max(1.0, abs(eager[0]["checksum"])), "different weights"

    t_lazy, t_eager = best(lazy, "seconds"), best(eager, "seconds")
    g_lazy, g_eager = best(lazy, "growth"), best(eager, "growth")
    print(f"{'contender':<28}{'time (best of ' + str(args.repeats) + ')':>20}{'RssAnon growth':>18}")
    print(f"{'load_checkpoint, all tensors':<28}{t_lazy:>19.3f}s{mib(g_lazy):>18}")
    print(f"{'from_pretrained':<28}{t_eager:>19.3f}s{mib(g_eager):>18}")
    speedup = t_eager / t_lazy
    mem_ratio = g_lazy / largest
    print(f"speed-up: {speedup:.1f}x (target >= 10x) -> {'PASS' if speedup >= 10 else 'FAIL'}")
    print(f"lazy RssAnon growth / largest tensor: {mem_ratio:.2f} (target < 2) -> {'PASS' if mem_ratio < 2 else 'FAIL'}")


if __name__ == "__main__":
    main()
