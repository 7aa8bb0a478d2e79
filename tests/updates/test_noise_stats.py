"""NoiseAccumulator against the per-element rounding variances it summarizes (float64 reference)."""

import pytest
import torch

from spurious_diag.geometry.noise import rounding_variance
from spurious_diag.updates import noise as noise_module
from spurious_diag.updates.noise import NoiseAccumulator


def _weights(shape, stored, seed=0):
    g = torch.Generator().manual_seed(seed)
    # rows and columns of different scales, as in real weights (heteroscedastic noise)
    w = torch.randn(*shape, generator=g) * torch.rand(shape[0], 1, generator=g).add(0.2) * torch.rand(1, shape[1], generator=g).add(0.2)
    return w.to(stored).float()


def _exact(w, stored, part_ids, out_axis):
    """(total, row_max, col_max) per part in (out, in) orientation, from every element's variance."""
    v = rounding_variance(w, stored)
    oriented = v if out_axis == 0 else v.T
    out = []
    for k in range(int(part_ids.max()) + 1):
        part = oriented[part_ids == k]
        out.append((float(part.sum()), float(part.sum(1).max()), float(part.sum(0).max())))
    return torch.tensor(out, dtype=torch.float64).T


def _stream(w, stored, part_ids, out_axis, chunk):
    meter = NoiseAccumulator(stored, w.shape[0], w.shape[1], part_ids, out_axis)
    for start in range(0, w.shape[0], chunk):
        meter.add(w[start : start + chunk], start)
    stats = meter.finish()
    return torch.stack([stats.total, stats.row_max, stats.col_max])


CASES = {
    "one part": ((256, 576), torch.zeros(256, dtype=torch.long), 0),
    "fused rows (qkv Linear)": ((384, 576), torch.arange(384) // 128, 0),
    "fused columns (Conv1D c_attn)": ((576, 384), torch.arange(384) // 128, 1),
}


def _edge(stats):
    return stats[1].sqrt() + stats[2].sqrt()


@pytest.mark.parametrize("stored", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("case", list(CASES))
def test_every_row_sampled_gives_the_exact_total_and_a_close_edge(monkeypatch, case, stored):
    shape, part_ids, out_axis = CASES[case]
    monkeypatch.setattr(noise_module, "SAMPLE_ELEMENTS", 10**9)  # stride 1: κ from every value
    w = _weights(shape, stored)
    exact = _exact(w, stored, part_ids, out_axis)
    got = _stream(w, stored, part_ids, out_axis, chunk=50)  # uneven chunks
    assert torch.allclose(got[0], exact[0], rtol=1e-5)  # κ·Σw² with κ = Σv/Σw²: exact
    # row and column maxima are κ·(sums of w²), a ratio estimate (v/w² depends on the mantissa only)
    assert ((got[1:] / exact[1:]) - 1).abs().max() < 0.15
    assert ((_edge(got) / _edge(exact)) - 1).abs().max() < 0.06  # SmolLM2-135M's weights: within 5%


TALL = {
    "one part": ((2048, 576), torch.zeros(2048, dtype=torch.long), 0),
    "fused rows (qkv Linear)": ((2304, 576), torch.arange(2304) // 768, 0),
    "fused columns (Conv1D c_attn)": ((2048, 576), torch.arange(576) // 192, 1),
}


@pytest.mark.parametrize("case", list(TALL))
def test_a_sample_of_rows_stays_close_and_chunking_does_not_matter(case):
    shape, part_ids, out_axis = TALL[case]
    w = _weights(shape, torch.bfloat16, seed=1)  # SAMPLE_ELEMENTS samples every ~36th row here
    exact = _exact(w, torch.bfloat16, part_ids, out_axis)
    whole = _stream(w, torch.bfloat16, part_ids, out_axis, chunk=shape[0])
    chunked = _stream(w, torch.bfloat16, part_ids, out_axis, chunk=300)
    assert torch.allclose(whole, chunked, rtol=1e-5)
    assert ((whole[0] / exact[0]) - 1).abs().max() < 0.03
    assert ((whole[1:] / exact[1:]) - 1).abs().max() < 0.15
    assert ((_edge(whole) / _edge(exact)) - 1).abs().max() < 0.06


def test_a_dtype_without_a_rounding_model_has_no_noise():
    meter = NoiseAccumulator(torch.int8, 4, 4, torch.zeros(4, dtype=torch.long), 0)
    meter.add(torch.ones(4, 4), 0)
    stats = meter.finish()
    assert float(stats.total) == float(stats.row_max) == float(stats.col_max) == 0.0
