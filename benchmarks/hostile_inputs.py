"""Every hostile input we know of, through the real CLI: the one line it prints and its exit code.

Builds the bad inputs in a temporary directory (paths with spaces on purpose), runs
``spurious-diag`` on each in a subprocess, and prints a Markdown table. Inputs are hashed
before and after every command: the last column says whether any input file changed.

    python benchmarks/hostile_inputs.py
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path


def tiny(arch: str, layers: int = 2, seed: int = 0):
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=32, n_head=4, n_layer=layers, vocab_size=101, n_positions=64)
    else:
        cfg = tf.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                             num_hidden_layers=layers, vocab_size=101, max_position_embeddings=64)
    return tf.AutoModelForCausalLM.from_config(cfg)


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for f in files:
            h.update(str(f).encode() + f.read_bytes())
    return h.hexdigest()


def build(root: Path) -> list[tuple[str, list[str], list[Path]]]:
    import torch
    from safetensors.torch import save_file

    cases: list[tuple[str, list[str], list[Path]]] = []
    a, b = root / "model a", root / "model b"
    tiny("llama").save_pretrained(a)
    tiny("llama", seed=1).save_pretrained(b)
    st = a / "model.safetensors"
    data = st.read_bytes()

    def file(name: str, content: bytes) -> Path:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        return p

    cases.append(("missing path", ["layers", str(root / "nope")], []))
    (root / "empty dir").mkdir()
    cases.append(("empty directory", ["layers", str(root / "empty dir")], []))
    nw = root / "no weights"
    nw.mkdir()
    (nw / "config.json").write_text("{}")
    cases.append(("directory without weights", ["layers", str(nw)], [nw]))
    p = file("zero.safetensors", b"")
    cases.append(("zero-length safetensors", ["layers", str(p)], [p]))
    p = file("truncated.safetensors", data[:-100])
    cases.append(("truncated safetensors", ["layers", str(p)], [p]))
    flipped = bytearray(data)
    flipped[20] ^= 0x5A
    p = file("flipped.safetensors", bytes(flipped))
    cases.append(("flipped byte in the header", ["layers", str(p)], [p]))
    huge = bytearray(data)
    huge[:8] = struct.pack("<Q", 2**40)
    p = file("badlen.safetensors", bytes(huge))
    cases.append(("header length past end of file", ["layers", str(p)], [p]))
    sharded = root / "sharded"
    tiny("llama").save_pretrained(sharded, max_shard_size="20KB")
    sorted(sharded.glob("model-*.safetensors"))[1].unlink()
    cases.append(("index names a missing shard", ["layers", str(sharded)], [sharded]))
    sh2 = root / "sharded2"
    tiny("llama").save_pretrained(sh2, max_shard_size="20KB")
    index = json.loads((sh2 / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.7.mlp.up_proj.weight"] = next(iter(index["weight_map"].values()))
    (sh2 / "model.safetensors.index.json").write_text(json.dumps(index))
    cases.append(("index names a missing tensor", ["layers", str(sh2)], [sh2]))
    dup = root / "dup shards"
    dup.mkdir()
    save_file({"w": torch.ones(2)}, dup / "model-00001-of-00002.safetensors")
    save_file({"w": torch.zeros(2), "v": torch.ones(1)}, dup / "model-00002-of-00002.safetensors")
    (dup / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors",
                                                                                  "v": "model-00002-of-00002.safetensors"}}))
    cases.append(("shards disagree (tensor in two shards)", ["layers", str(dup)], [dup]))
    p = file("zero.gguf", b"")
    cases.append(("zero-length GGUF", ["layers", str(p)], [p]))
    p = file("bad.gguf", b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    cases.append(("GGUF with a corrupt header", ["layers", str(p)], [p]))
    p = file("bad bin/pytorch_model.bin", b"PK\x03\x04 not a zip" * 8)
    cases.append(("corrupt .bin", ["layers", str(p.parent)], [p]))
    deep = root / "deeper"
    tiny("llama", layers=3).save_pretrained(deep)
    cases.append(("different layer counts", ["audit", str(a), str(deep), "--out", str(root / "o1")], [a, deep]))
    g2 = root / "gpt2 model"
    tiny("gpt2").save_pretrained(g2)
    cases.append(("different architectures", ["audit", str(a), str(g2), "--out", str(root / "o2")], [a, g2]))
    sd = {k: v for k, v in __import__("safetensors.torch", fromlist=["load_file"]).load_file(st).items()}
    shape = dict(sd)
    shape["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)
    sm = root / "shape mismatch"
    sm.mkdir()
    save_file(shape, sm / "model.safetensors")
    (sm / "config.json").write_text((a / "config.json").read_text())
    cases.append(("a tensor's shape differs", ["audit", str(a), str(sm), "--out", str(root / "o3")], [a, sm]))
    nan = dict(sd)
    nan["model.layers.1.self_attn.q_proj.weight"] = nan["model.layers.1.self_attn.q_proj.weight"].clone()
    nan["model.layers.1.self_attn.q_proj.weight"][0, 0] = float("nan")
    nn_dir = root / "nan model"
    nn_dir.mkdir()
    save_file(nan, nn_dir / "model.safetensors")
    (nn_dir / "config.json").write_text((a / "config.json").read_text())
    cases.append(("NaN in a weight (reported per tensor)", ["audit", str(a), str(nn_dir), "--out", str(root / "o4")], [a, nn_dir]))
    bf = root / "bf16 model"
    bf.mkdir()
    save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, bf / "model.safetensors")
    (bf / "config.json").write_text((a / "config.json").read_text())
    cases.append(("bf16 vs fp32 (compared in fp32)", ["audit", str(a), str(bf), "--out", str(root / "o5")], [a, bf]))
    z1, z2 = root / "zero size 1.safetensors", root / "zero size 2.safetensors"
    save_file({"w": torch.zeros(0, 4), "v": torch.ones(3, 3)}, z1)
    save_file({"w": torch.zeros(0, 4), "v": torch.zeros(3, 3)}, z2)
    cases.append(("a tensor of zero size", ["audit", str(z1), str(z2), "--out", str(root / "o6")], [z1, z2]))
    out = root / "full out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cases.append(("--out exists and is not empty", ["audit", str(a), str(b), "--out", str(out)], [a, b, out]))
    cases.append(("--out inside an input", ["audit", str(a), str(b), "--out", str(a / "report"), "--overwrite"], [a, b]))
    blocker = file("a file", b"x")
    cases.append(("--out under a regular file", ["audit", str(a), str(b), "--out", str(blocker / "sub")], [a, b]))
    cases.append(("--device cuda without a GPU", ["audit", str(a), str(b), "--out", str(root / "o7"), "--device", "cuda"], [a, b]))
    from spurious_diag.biography.pretrain import shipped_base_dir

    base = str(shipped_base_dir())
    for label, content in (("JSONL line without 'completion'", b'{"prompt": "q"}\n'),
                           ("JSONL with an empty completion", b'{"prompt": "q", "completion": ""}\n'),
                           ("JSONL with non-UTF-8 bytes", b'{"prompt": "\xff\xfe", "completion": "x"}\n'),
                           ("JSONL that is not JSON", b"prompt,completion\n")):
        p = file(f"data {len(cases)}.jsonl", content)
        cases.append((label, ["train", "--model", base, "--data", str(p), "--out", str(root / f"t{len(cases)}")], [p]))
    good = file("good data.jsonl", b'{"prompt": "q", "completion": " a"}\n' * 4)
    cases.append(("train --resume with no checkpoint in --out",
                  ["train", "--model", base, "--data", str(good), "--out", str(root / "empty run"), "--resume"],
                  [good]))
    cases.append(("diagnose: BEFORE is a file, not a model dir",
                  ["diagnose", str(good), base, "--task", str(good), "--out", str(root / "d1")], [good]))
    bad_task = file("old task.jsonl", b'{"completion": "x"}\n')
    cases.append(("diagnose: old-task JSONL without 'prompt'",
                  ["diagnose", base, base, "--task", str(bad_task), "--out", str(root / "d2")], [bad_task]))
    from spurious_diag.biography.pretrain import load_base_model

    shallow = root / "shallow model"
    shipped = load_base_model()
    config = shipped.model.config
    config.num_hidden_layers = 2
    type(shipped.model)(config).save_pretrained(shallow)
    shipped.tokenizer.save_pretrained(shallow)
    cases.append(("diagnose: models of different depth",
                  ["diagnose", base, str(shallow), "--task", str(good), "--out", str(root / "d3")], [shallow, good]))
    cases.append(("convert of a safetensors dir (nothing to do)", ["convert", str(a), str(root / "conv")], [a]))
    return cases


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="hostile inputs ") as tmp:
        root = Path(tmp)
        for label, args, inputs in build(root):
            before = digest(inputs)
            proc = subprocess.run([sys.executable, "-m", "spurious_diag", "--threads", "1", *args],
                                  capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            lines = [ln for ln in proc.stderr.splitlines() if "spurious-diag" in ln and ("error" in ln or "interrupted" in ln)]
            if not lines:  # a success: show what it reported about the odd input
                lines = [ln[ln.index("WARNING"):] for ln in proc.stderr.splitlines() if "WARNING spurious_diag" in ln]
            shown = lines[0].replace(tmp, "<tmp>") if lines else "(no error line)"
            traceback = "Traceback" in proc.stderr
            rows.append((label, proc.returncode, shown, traceback, digest(inputs) == before))
    print("| bad input | exit code | what the CLI printed | traceback | inputs unchanged |")
    print("|---|---|---|---|---|")
    for label, code, line, tb, same in rows:
        print(f"| {label} | {code} | `{line[:160]}` | {'YES' if tb else 'no'} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
