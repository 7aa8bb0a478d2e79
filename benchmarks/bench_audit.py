"""The audit on SmolLM2-135M against a norms-only pass and the naive exact approach, side by side.

The chain: the converted SmolLM2 (base) → +Δ1 → +Δ2, where every 2-D weight gets a
seeded *full-rank* update with a slowly decaying 1/i spectrum (an exactly
low-rank update would make the randomized SVD trivially exact), Δ2's singular
subspaces correlated with Δ1's so the angles are neither 0° nor 90°.

Contenders, each in a fresh 1-thread subprocess (the fast ones three times, interleaved;
medians compared):
  audit  — ``spurious_diag.audit`` at rank 16 (streamed; randomized SVD where large);
  norms  — a norms-only pass over the same tensors: (a1) a bare loop over the lazy loader
           computing ‖ΔW‖; (a2) the audit engine with angles off (sizes and cosines, no SVD);
  naive  — both models loaded with ``from_pretrained`` and an exact SVD of every update.
Targets (issue #3): audit ≥ 5× faster than naive with angles within 1°, within 5× of
norms, and RssAnon growth < 4× the largest tensor (fp32) + 300 MB.

    python benchmarks/bench_audit.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _measure import mib  # noqa: E402
from _models import CACHE, smollm2_hf_dir  # noqa: E402

RANK = 16


def make_chain(base_dir: Path, seed: int = 0) -> list[Path]:
    """Write base+Δ1 and base+Δ1+Δ2 next to the cache (once)."""
    import torch
    from safetensors.torch import load_file, save_file

    out = [CACHE / "smollm2-chain" / f"step{i}" for i in (1, 2)]
    if all((p / "model.safetensors").is_file() for p in out):
        return [base_dir, *out]
    g = torch.Generator().manual_seed(seed)
    base = load_file(base_dir / "model.safetensors")
    step1, step2 = {}, {}
    for name, w in base.items():
        if w.dim() != 2:
            step1[name], step2[name] = w, w
            continue
        m, n = w.shape
        k = min(m, n)
        s = torch.arange(1, k + 1, dtype=torch.float32).reciprocal()
        u1 = torch.linalg.qr(torch.randn(m, k, generator=g)).Q
        v1 = torch.linalg.qr(torch.randn(n, k, generator=g)).Q
        u2 = torch.linalg.qr(u1 + 0.8 * torch.randn(m, k, generator=g) / k**0.5).Q
        v2 = torch.linalg.qr(v1 + 0.8 * torch.randn(n, k, generator=g) / k**0.5).Q
        scale = 1e-3 * float(w.norm()) / float(s.norm())  # ‖Δ‖ = 0.1% of ‖W‖
        d1 = (u1 * (scale * s)) @ v1.T
        d2 = (u2 * (scale * s)) @ v2.T
        step1[name] = w + d1
        step2[name] = step1[name] + d2
    for path, state in zip(out, (step1, step2)):
        path.mkdir(parents=True, exist_ok=True)
        save_file(state, path / "model.safetensors", metadata={"format": "pt"})
        (path / "config.json").write_text((base_dir / "config.json").read_text())
    return [base_dir, *out]


CHILD = r"""
import json, math, os, sys, torch
sys.path.insert(0, {bench_dir!r})
torch.set_num_threads(1)
from _measure import measure
paths = {paths!r}
mode = {mode!r}
result = {{}}
if mode in ("audit", "audit-norms"):
    from spurious_diag import AuditOptions, audit
    with measure() as m:
        res = audit(paths, AuditOptions(rank={rank}, angles=mode == "audit"), progress=False)
    p = res.pairs
    result["angles"] = {{n: [a, b] for n, a, b in zip(p["name"], p["angle_mean_deg"], p["angle_min_deg"])}}
elif mode == "norms":
    from spurious_diag import load_checkpoint
    with measure() as m:
        ckpts = [load_checkpoint(p) for p in paths]
        norms = {{}}
        for name in ckpts[0]:
            prev = ckpts[0][name].float()
            for c in ckpts[1:]:
                cur = c[name].float()
                norms[(name, id(c))] = float((cur - prev).norm())
                prev = cur
else:
    from transformers import AutoModelForCausalLM
    from spurious_diag.geometry import principal_angles
    with measure() as m:
        models = [AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32) for p in paths]
        states = [md.state_dict() for md in models]
        angles = {{}}
        for name, w0 in states[0].items():
            if w0.dim() != 2 or name == "lm_head.weight":  # tied to the embedding
                continue
            bases = []
            for a, b in zip(states, states[1:]):
                u, s, vh = torch.linalg.svd(b[name] - a[name], full_matrices=False)
                bases.append(u[:, :{rank}])
            theta = torch.rad2deg(principal_angles(bases[0], bases[1]).double())
            angles[name] = [float(theta.mean()), float(theta.min())]
    result["angles"] = angles
result.update(seconds=m.seconds, growth=m.growth_bytes)
print(json.dumps(result))
"""


def run_child(mode: str, paths: list[str]) -> dict:
    code = CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)), paths=paths, mode=mode, rank=RANK)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(rounds: int = 3) -> None:
    base = smollm2_hf_dir()
    paths = [str(p) for p in make_chain(base)]
    from spurious_diag import load_checkpoint

    ckpt = load_checkpoint(paths[0])
    largest = max(i.numel * 4 for i in ckpt.infos().values())
    print(f"chain: {len(paths)} checkpoints of SmolLM2-135M, {len(ckpt)} tensors, largest {mib(largest)} (fp32)")
    # The machine is shared: the fast contenders run `rounds` times, interleaved, each in a
    # fresh process, and their medians are compared; the 25 s naive path runs once.
    runs: dict[str, list[dict]] = {"norms": [], "audit-norms": [], "audit": []}
    for _ in range(rounds):
        for mode in runs:
            runs[mode].append(run_child(mode, paths))
    norms, norms_engine, full = (_median(runs[m]) for m in ("norms", "audit-norms", "audit"))
    naive = run_child("naive", paths)
    diffs_mean = [abs(full["angles"][n][0] - v[0]) for n, v in naive["angles"].items()]
    diffs_min = [abs(full["angles"][n][1] - v[1]) for n, v in naive["angles"].items()]
    print(f"{'contender':<40}{'time (median)':>14}{'all runs':>24}{'RssAnon growth':>18}")
    rows = (("(a1) norms only, bare lazy loop", norms, runs["norms"]),
            ("(a2) norms only, audit --no-angles", norms_engine, runs["audit-norms"]),
            ("audit, rank 16", full, runs["audit"]), ("(b) naive: from_pretrained + exact SVD", naive, [naive]))
    for label, r, all_runs in rows:
        spread = " ".join(f"{x['seconds']:.2f}" for x in all_runs)
        print(f"{label:<40}{r['seconds']:>13.2f}s{spread:>24}{mib(r['growth']):>18}")
    speedup = naive["seconds"] / full["seconds"]
    vs_norms = full["seconds"] / norms["seconds"]
    vs_engine = full["seconds"] / norms_engine["seconds"]
    budget = 4 * largest + 300 * 2**20
    print(f"angles compared on {len(diffs_mean)} tensors; mean angles {min(v[0] for v in naive['angles'].values()):.1f}–"
          f"{max(v[0] for v in naive['angles'].values()):.1f} deg")
    print(f"largest |angle_mean fast - exact| = {max(diffs_mean):.3f} deg, |angle_min| = {max(diffs_min):.3f} deg "
          f"(target <= 1) -> {'PASS' if max(diffs_mean + diffs_min) <= 1 else 'FAIL'}")
    print(f"audit vs naive: {speedup:.1f}x faster (target >= 5) -> {'PASS' if speedup >= 5 else 'FAIL'}")
    print(f"audit / (a1) bare norms loop: {vs_norms:.1f}x (target <= 5) -> {'PASS' if vs_norms <= 5 else 'FAIL'}")
    print(f"audit / (a2) audit --no-angles: {vs_engine:.1f}x (target <= 5) -> {'PASS' if vs_engine <= 5 else 'FAIL'}")
    growth = max(r["growth"] for r in runs["audit"])
    print(f"audit RssAnon growth (largest of {rounds} runs) {mib(growth)} vs budget {mib(budget)} -> "
          f"{'PASS' if growth < budget else 'FAIL'}")


def _median(results: list[dict]) -> dict:
    """The run with the median time (its angles and memory go with it)."""
    return sorted(results, key=lambda r: r["seconds"])[len(results) // 2]


if __name__ == "__main__":
    main()
