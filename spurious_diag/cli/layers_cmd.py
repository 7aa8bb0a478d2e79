"""``spurious-diag layers CKPT``: print the layer map of a checkpoint (names from headers only)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("layers", help="print the layer map of a checkpoint (block, module, shape, dtype)",
                       description="One line per stored tensor, bottom up: the embeddings (layer -1), the blocks, "
                       "then the final norm and LM head (layer L), then tensors outside the layer map. Reads "
                       "headers only.")
    p.add_argument("checkpoint", help="HF model dir, .safetensors, .bin or .gguf file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..io.loader import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    infos = ckpt.infos()
    params = {name: ckpt.param_info(name) for name in infos}
    # Bottom up: the embeddings first, the head after the last block, unmapped tensors last;
    # the stored order within a layer.
    order = sorted(infos, key=lambda n: (params[n].layer is None, params[n].layer if params[n].layer is not None else 0))
    out = sys.stdout
    out.write(f"# {ckpt.path}: {len(ckpt)} tensors, format {ckpt.format}, {ckpt.num_layers} blocks\n")
    out.write(f"{'layer':>5}  {'module':<18} {'shape':<16} {'dtype':<9} name\n")
    for name in order:
        info, p = infos[name], params[name]
        layer = "-" if p.layer is None else str(p.layer)
        shape = "x".join(map(str, info.shape)) or "scalar"
        dtype = str(info.dtype).replace("torch.", "")
        out.write(f"{layer:>5}  {p.module:<18} {shape:<16} {dtype:<9} {name}\n")
    for stored, aliases in ckpt.tied.items():
        out.write(f"# tied: {', '.join(aliases)} -> {stored}\n")
    return 0
