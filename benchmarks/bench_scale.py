"""The audit at 7B-class shapes: time and RssAnon on synthetic sharded bf16 chains of 4 and 16 blocks.

Llama-7B shapes (hidden 4096, MLP 11008, vocab 32000, untied head), three checkpoints
per chain, written as bf16 safetensors shards of one block each. The generator holds one
block of one checkpoint at a time. Updates are full rank (a scaled, shifted copy of the
weight) plus a rank-32 part with a decaying spectrum, so the SVD path is exercised.

The issue's bound: RssAnon growth over the post-import baseline below 4x the largest tensor
in fp32 + 300 MB, the same for both sizes (the audit streams, so depth must not matter), and
per process when the deepest chain is audited again under ``torchrun`` (``--processes 2``):
wall time of both commands side by side (start-up included), each rank's RssAnon.

    python benchmarks/bench_scale.py [--blocks 4 16] [--processes 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _measure import mib  # noqa: E402
from _models import CACHE  # noqa: E402

HIDDEN, MLP, VOCAB, HEADS = 4096, 11008, 32000, 32


def _shapes(blocks: int) -> dict[str, list[tuple[str, tuple[int, int]]]]:
    """Shard name → [(tensor name, shape)], one shard per block plus embeddings and head."""
    shards = {"embed": [("model.embed_tokens.weight", (VOCAB, HIDDEN))]}
    for b in range(blocks):
        p = f"model.layers.{b}."
        shards[f"block{b}"] = [
            (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN)), (p + "self_attn.k_proj.weight", (HIDDEN, HIDDEN)),
            (p + "self_attn.v_proj.weight", (HIDDEN, HIDDEN)), (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            (p + "mlp.gate_proj.weight", (MLP, HIDDEN)), (p + "mlp.up_proj.weight", (MLP, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, MLP)),
            (p + "input_layernorm.weight", (HIDDEN,)), (p + "post_attention_layernorm.weight", (HIDDEN,)),
        ]
    shards["head"] = [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    return shards


def _tensor(name: str, shape: tuple, step: int, seed: int):
    """Weight of ``name`` at checkpoint ``step``: base + step-dependent full-rank and rank-32 updates."""
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(f"{name}/{seed}".encode()))
    w = torch.randn(shape, generator=g) * 0.02 if len(shape) == 2 else torch.ones(shape)
    for k in range(1, step + 1):
        gk = torch.Generator().manual_seed(zlib.crc32(f"{name}/{seed}/{k}".encode()))
        if len(shape) == 2:
            m, n = shape
            u, v = torch.randn(m, 32, generator=gk), torch.randn(32, n, generator=gk)
            s = torch.arange(1, 33, dtype=torch.float32).reciprocal()
            w += 2e-4 * torch.roll(w, shifts=k, dims=1) + 1e-4 * (u * s) @ v
        else:
            w += 1e-3 * torch.randn(shape, generator=gk)
    return w.to(torch.bfloat16)


def make_chain(blocks: int, seed: int = 0) -> list[Path]:
    from safetensors.torch import save_file

    root = CACHE / f"llama7b-shapes-{blocks}"
    paths = [root / f"ckpt{i}" for i in range(3)]
    if all((p / "model.safetensors.index.json").is_file() for p in paths):
        return paths
    shards = _shapes(blocks)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": HIDDEN,
              "intermediate_size": MLP, "num_hidden_layers": blocks, "num_attention_heads": HEADS,
              "num_key_value_heads": HEADS, "vocab_size": VOCAB, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16"}
    for step, path in enumerate(paths):
        path.mkdir(parents=True, exist_ok=True)
        weight_map = {}
        for i, (shard, tensors) in enumerate(shards.items()):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file({n: _tensor(n, s, step, seed) for n, s in tensors}, path / fname, metadata={"format": "pt"})
            weight_map.update({n: fname for n, _ in tensors})
        (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
        (path / "config.json").write_text(json.dumps(config))
        print(f"  wrote {path}", flush=True)
    return paths


CHILD = r"""
import json, sys, torch
sys.path.insert(0, {bench_dir!r})
torch.set_num_threads({threads})
from _measure import measure
from spurious_diag import AuditOptions, audit
from spurious_diag.distributed import process_group_from_env
with process_group_from_env() as world:  # one process without torchrun; a rank of N under it
    with measure() as m:
        res = audit({paths!r}, AuditOptions(rank=16), progress=False)
    print(json.dumps({{"seconds": m.seconds, "growth": m.growth_bytes, "rows": len(res.updates), "pairs": len(res.pairs),
                      "bad": int((res.updates["status"] != "ok").sum()), "rank": world.rank,
                      "shares": res.summary["distributed"],
                      "top": res.summary["rankings"]["by_update_size"].get("1", [])[:3]}}))
"""


def run_audit(paths: list[Path], threads: int, processes: int, script: Path) -> tuple[float, list[dict]]:
    """The audit of ``paths`` in ``processes`` processes (torchrun when > 1), ``threads`` threads each.

    Returns the command's wall time (start-up included) and each rank's record (in-process audit
    time and RssAnon growth)."""
    script.write_text(CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), threads=threads,
                                   paths=[str(p) for p in paths]))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, str(script)] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
        str(_free_port()), str(script)]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return wall, sorted(records, key=lambda r: r["rank"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--processes", type=int, default=2,
                        help="also audit the deepest chain under torchrun with this many processes (1: not)")
    parser.add_argument("--keep", action="store_true", help="keep the generated chains (GBs) in the cache")
    args = parser.parse_args()
    largest_fp32 = VOCAB * HIDDEN * 4
    budget = 4 * largest_fp32 + 300 * 2**20
    print(f"largest tensor {VOCAB}x{HIDDEN}: {mib(largest_fp32)} in fp32; budget 4x + 300 MB = {mib(budget)} per process")
    rows, parallel = [], None
    script = CACHE / "bench_scale_child.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    for blocks in args.blocks:
        print(f"generating the {blocks}-block chain (3 checkpoints, bf16 shards)...", flush=True)
        paths = make_chain(blocks)
        size = sum(f.stat().st_size for p in paths for f in p.glob("*.safetensors"))
        wall, (r,) = run_audit(paths, args.threads, 1, script)
        rows.append((blocks, size, wall, r))
        if args.processes > 1 and blocks == max(args.blocks):
            print(f"auditing the {blocks}-block chain again under torchrun, {args.processes} processes...", flush=True)
            parallel = (blocks, wall, r, *run_audit(paths, args.threads, args.processes, script))
        if not args.keep:
            shutil.rmtree(paths[0].parent)
    script.unlink(missing_ok=True)
    print(f"{'blocks':>6}{'chain on disk':>16}{'audit time':>12}{'RssAnon growth':>17}{'/ largest fp32':>16}{'verdict':>9}")
    for blocks, size, wall, r in rows:
        ok = r["growth"] < budget
        print(f"{blocks:>6}{size / 2**30:>14.1f}GB{r['seconds']:>11.1f}s{mib(r['growth']):>17}"
              f"{r['growth'] / largest_fp32:>16.2f}{'PASS' if ok else 'FAIL':>9}")
        print(f"        {r['rows']} update rows, {r['pairs']} pair rows, {r['bad']} not ok, largest updates in layers {r['top']}")
    if parallel is not None:
        blocks, wall_1, one, wall_n, ranks = parallel
        n = len(ranks)
        slowest = max(r["seconds"] for r in ranks)
        print(f"\n== {blocks} blocks: 1 process against {n} under torchrun ({args.threads} thread(s) each; wall = the "
              "whole command, start-up included; audit = in-process, the slowest rank) ==")
        print(f"{'processes':>10}{'wall':>10}{'audit':>10}{'wall ratio':>12}{'RssAnon growth per process':>40}")
        print(f"{1:>10}{wall_1:>9.1f}s{one['seconds']:>9.1f}s{1.0:>12.2f}{mib(one['growth']):>40}")
        growth = ", ".join(f"rank {r['rank']} {mib(r['growth'])}" for r in ranks)
        print(f"{n:>10}{wall_n:>9.1f}s{slowest:>9.1f}s{wall_1 / wall_n:>12.2f}{growth:>40}")
        shares = ranks[0]["shares"]
        print(f"shares: {shares['tensors_per_rank']} tensors, {[mib(b) for b in shares['bytes_per_rank']]}; "
              f"rows equal to one process: {all(r['rows'] == one['rows'] and r['pairs'] == one['pairs'] for r in ranks)}; "
              f"memory budget per process: {'PASS' if all(r['growth'] < budget for r in ranks) else 'FAIL'}")

if __name__ == "__main__":
    main()
