"""``spurious-diag layers CKPT``: print the layer map of a checkpoint (names from headers only)."""

from __future__ import annotations

import argparse
import sys

from ..io import load_checkpoint


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layers", help="print the layer map of a checkpoint (block, module, shape, dtype)")
    p.add_argument("checkpoint", help="HF model dir, .safetensors, .bin or .gguf file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    out = sys.stdout
    out.write(f"# {ckpt.path}: {len(ckpt)} tensors, format {ckpt.format}, {ckpt.num_layers} blocks\n")
    out.write(f"{'layer':>5}  {'module':<18} {'shape':<16} {'dtype':<9} name\n")
    for name, info in ckpt.infos().items():
        p = ckpt.param_info(name)
        layer = "-" if p.layer is None else str(p.layer)
        shape = "x".join(map(str, info.shape)) or "scalar"
        dtype = str(info.dtype).replace("torch.", "")
        out.write(f"{layer:>5}  {p.module:<18} {shape:<16} {dtype:<9} {name}\n")
    for stored, aliases in ckpt.tied.items():
        out.write(f"# tied: {', '.join(aliases)} -> {stored}\n")
    return 0
