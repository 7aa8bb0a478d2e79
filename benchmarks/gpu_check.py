"""GPU check: the audit with --device cuda against the CPU path, and a freeze-and-train step on CUDA.

Runs where a GPU exists (see gpu_check.sh); needs only torch, transformers, safetensors, pandas
and tqdm, nothing from a registry. Builds a seeded 3-checkpoint chain from the SmolLM2-135M
config (random init; full-rank updates with a 1/i spectrum, the second correlated with the
first), audits it on CPU and on CUDA (random test matrices drawn on the CPU, so both see the
same), and prints times and the largest angle difference (target: within 0.1°). Then times
Freeze(6) training steps on CUDA against the CPU and checks the frozen tensors bit-identical.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
