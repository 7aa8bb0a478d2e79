import copy

import pytest
import torch

from spurious_diag.errors import MismatchError
from spurious_diag.io.layer_map import parse_param_name
from spurious_diag.probes.grafting import GRAFT_COLUMNS, embeddings_tied_to_head, graft, grafting_curve
from tests.probes.conftest import as_json


def _block_outputs(model, ids):
    """Output of every decoder block (forward hooks), then the logits."""
    outs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o).clone()))
             for layer in model.model.layers]
    try:
        logits = model(input_ids=ids).logits
    finally:
        for h in hooks:
            h.remove()
    return outs, logits


def _pair(tiny_llama, num_layers=3):
    """Two models that differ in every tensor (norm weights too, which init to ones)."""
    source, target = tiny_llama(num_layers, seed=0), tiny_llama(num_layers, seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return source, target


def test_graft_k0_changes_nothing(tiny_llama):
    source, target = _pair(tiny_llama)
    before = {n: t.clone() for n, t in target.state_dict().items()}
    report = graft(target, source, [])
    assert report.names == []
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_graft_all_blocks_and_embeddings_restores_the_source_block_outputs_exactly(tiny_llama):
    source, target = _pair(tiny_llama)
    ids = torch.randint(2, 101, (2, 9), generator=torch.Generator().manual_seed(0))
    report = graft(target, source, range(3), embeddings=True)
    assert report.embeddings and report.blocks == (0, 1, 2) and not report.cast
    src_blocks, src_logits = _block_outputs(source, ids)
    new_blocks, new_logits = _block_outputs(target, ids)
    for a, b in zip(src_blocks, new_blocks):
        assert torch.equal(a, b)  # bit-identical
    assert not torch.allclose(src_logits, new_logits)  # the final norm and head were not swapped
    state = source.state_dict()
    for name, tensor in target.state_dict().items():
        info = parse_param_name(name, 3)
        assert torch.equal(tensor, state[name]) == (info.position in ("embed", "block")), name


def test_graft_selects_by_exact_block_index(tiny_llama):
    source, target = _pair(tiny_llama, num_layers=12)
    before = {n: t.clone() for n, t in target.state_dict().items()}
    report = graft(target, source, [1])
    assert report.names and all(".layers.1." in n for n in report.names)
    for name, tensor in target.state_dict().items():
        changed = not torch.equal(tensor, before[name])
        assert changed == (".layers.1." in name), name  # layers.10 and layers.11 untouched


def test_graft_checks_and_refusals(tiny_llama):
    source, target = _pair(tiny_llama)
    with pytest.raises(MismatchError, match="outside"):
        graft(target, source, [3])
    state = dict(source.state_dict())
    del state["model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(MismatchError, match="missing"):
        graft(copy.deepcopy(target), state, [0])
    tied = tiny_llama(3, seed=2, tie=True)
    assert embeddings_tied_to_head(tied) and not embeddings_tied_to_head(target)
    with pytest.raises(MismatchError, match="tied"):
        graft(tied, tiny_llama(3, seed=3, tie=True), [], embeddings=True)
    half = {n: t.to(torch.bfloat16) for n, t in source.state_dict().items()}
    assert graft(copy.deepcopy(target), half, [0]).cast  # an exact upcast is allowed and reported


def test_grafting_curve_rows_and_identity_arms(bio_base):
    base, tokenizer, scenario = bio_base
    damaged = copy.deepcopy(base)
    with torch.no_grad():
        for p in damaged.model.layers[0].parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    bios = [dict(r, completion=r["completion"]) for r in as_json(scenario.probes("task0_test")[:30])]
    # Score the biography format (no <eos>) so that the base model's accuracy is high.
    from spurious_diag.training.evaluate import evaluate_records

    def score(model, records):
        result = evaluate_records(model, tokenizer, records, append_eos=False)
        return result.exact_match, result.first_token_acc

    frame = grafting_curve(base, damaged, tokenizer, bios, evaluate=score)
    assert list(frame.columns) == GRAFT_COLUMNS
    assert list(zip(frame["arm"], frame["k"])) == ([("bottom", k) for k in range(5)] + [("top", k) for k in range(1, 5)]
                                                   + [("embeddings", 0)])
    rows = frame.set_index(["arm", "k"])
    source_acc = score(base, bios)[0]
    damaged_acc = score(damaged, bios)[0]
    assert rows.loc[("bottom", 0), "old_acc"] == damaged_acc
    assert rows.loc[("bottom", 1), "old_acc"] == source_acc  # block 0 was the only damage
    assert rows.loc[("top", 3), "old_acc"] == damaged_acc  # blocks 1-3: not the damaged one
    assert rows.loc[("bottom", 4), "n_tensors"] == 36 and rows.loc[("embeddings", 0), "n_tensors"] == 1
    thin = grafting_curve(base, damaged, tokenizer, bios, evaluate=score, ks=[2], embeddings_arm=False)
    assert list(zip(thin["arm"], thin["k"])) == [("bottom", 0), ("bottom", 2), ("top", 2)]
