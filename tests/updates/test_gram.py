"""The Gram pass against dense float64 dot products, in one chunk and in many."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from spurious_diag.updates.gram import gram_pass
from spurious_diag.updates.plan import plan_updates
from spurious_diag.updates.sources import open_sources
from spurious_diag.updates.tensor import orient, tensor_context

NAMES = ["transformer.h.0.attn.c_attn.weight",  # Conv1D, fused q/k/v
         "transformer.h.1.mlp.c_fc.weight",     # Conv1D
         "transformer.h.0.attn.c_attn.bias",    # 1-D, fused
         "transformer.ln_f.weight"]             # 1-D


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> list[Path]:
    """Three float32 GPT-2 checkpoints on disk (lazy, row-sliceable), each a random step from the last."""
    from tests.conftest import tiny_config, tiny_model

    config = tiny_config("gpt2")
    state = {k: v.detach().clone() for k, v in tiny_model("gpt2").state_dict().items() if v.is_floating_point()}
    g = torch.Generator().manual_seed(0)
    dirs = []
    for i in range(3):
        if i:
            state = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in state.items()}
        out = tmp_path_factory.mktemp(f"ckpt{i}")
        save_file({k: v.contiguous() for k, v in state.items()}, out / "model.safetensors")
        config.save_pretrained(out)
        dirs.append(out)
    return dirs


@pytest.mark.parametrize("chunk_bytes", [64 * 2**20, 1024], ids=["one chunk", "many chunks"])
@pytest.mark.parametrize("base", [False, True], ids=["chain", "base"])
def test_gram_pass_equals_dense_float64_products(chain, chunk_bytes, base):
    sources = open_sources([str(d) for d in chain])
    plans = plan_updates(sources, base)
    for name in NAMES:
        ctx = tensor_context(name, sources)
        measured = gram_pass(ctx, sources, plans, dtype=torch.float32, chunk_bytes=chunk_bytes)
        weights = [sources[i][name].double() for i in range(len(sources))]
        deltas = [weights[p.target] - weights[p.source] for p in plans]
        for k, part in enumerate(ctx.parts):
            flat = torch.stack([orient(d, ctx)[part.index].reshape(-1) for d in deltas])
            src = torch.stack([orient(weights[p.source], ctx)[part.index].reshape(-1) for p in plans])
            assert torch.allclose(measured.gram[k], flat @ flat.T, rtol=1e-5, atol=0), (name, part.part)
            assert torch.allclose(measured.source_sq[k], (src * src).sum(dim=1), rtol=1e-6, atol=0), name
        assert len(ctx.parts) == (3 if "c_attn" in name else 1)
        assert all(measured.finite.values())


def test_gram_pass_keeps_the_updates_in_stored_orientation(chain):
    sources = open_sources([str(d) for d in chain])
    plans = plan_updates(sources)
    name = NAMES[1]
    measured = gram_pass(tensor_context(name, sources), sources, plans, dtype=torch.float32, chunk_bytes=64 * 2**20)
    assert measured.deltas is not None and len(measured.deltas) == 2
    for delta, plan in zip(measured.deltas, plans):
        assert torch.equal(delta, sources[plan.target][name] - sources[plan.source][name])


def test_gram_pass_reports_non_finite_values_per_checkpoint(chain, tmp_path):
    from spurious_diag import load_checkpoint

    bad = tmp_path / "bad"
    bad.mkdir()
    ckpt = load_checkpoint(str(chain[2]))
    state = {k: ckpt[k].clone() for k in ckpt}
    state[NAMES[1]][3, 5] = float("nan")
    save_file(state, bad / "model.safetensors")
    (bad / "config.json").write_text((chain[2] / "config.json").read_text())
    sources = open_sources([str(chain[0]), str(chain[1]), str(bad)])
    plans = plan_updates(sources)
    measured = gram_pass(tensor_context(NAMES[1], sources), sources, plans, dtype=torch.float32, chunk_bytes=1024)
    assert measured.finite == {0: True, 1: True, 2: False}
    assert torch.isfinite(measured.gram).all()  # the bad element counts as 0, the rows stay usable
