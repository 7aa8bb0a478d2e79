"""Freezing under FSDP2 (``torch.distributed.fsdp.fully_shard``) on CPU with gloo: parameters are
sharded DTensors, and ``verify_frozen`` gathers each one whole before comparing, so every rank
checks every frozen tensor, not only its shard. (transformers' Trainer does not shard on the CPU:
``spurious-diag train`` refuses an FSDP or DeepSpeed launch there, see test_refusal below.)"""

from __future__ import annotations

import json
import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from spurious_diag.biography.pretrain import shipped_base_dir


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    from spurious_diag import freeze_bottom_layers, verify_frozen

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    try:
        model = AutoModelForCausalLM.from_pretrained(shipped_base_dir(), dtype=torch.float32)
        report = freeze_bottom_layers(model, 1)
        for block in model.model.layers:
            fully_shard(block)
        fully_shard(model)
        sharded = type(model.model.layers[0].self_attn.q_proj.weight).__name__
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1)
        ids = torch.randint(5, 90, (4, 12), generator=torch.Generator().manual_seed(rank))
        for _ in range(2):
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        clean = verify_frozen(shipped_base_dir(), model, report.frozen)
        target = "model.layers.0.mlp.up_proj.weight"
        if rank == 1:  # a frozen tensor moved in rank 1's shard only
            with torch.no_grad():
                dict(model.named_parameters())[target].to_local().add_(1e-3)
        moved = verify_frozen(shipped_base_dir(), model, report.frozen)
        Path(out, f"rank{rank}.json").write_text(json.dumps({
            "sharded": sharded, "frozen": len(report.frozen), "clean_ok": clean.ok, "clean_identical": len(clean.identical),
            "trained": len(clean.trainable_changed), "moved_ok": moved.ok, "moved": moved.changed}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_frozen_tensors_are_checked_whole_on_every_rank(tmp_path):
    torch.multiprocessing.start_processes(_rank, args=(_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["sharded"] == "DTensor"  # FSDP2 really sharded the blocks
        assert r["clean_ok"] and r["clean_identical"] == r["frozen"] > 0 and r["trained"] > 0
        # the shard that moved on rank 1 is seen by rank 0 too: the tensors were gathered whole
        assert not r["moved_ok"] and r["moved"] == ["model.layers.0.mlp.up_proj.weight"]


@pytest.mark.parametrize("variable, engine", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_refusal_of_fsdp_or_deepspeed_launches_on_the_cpu(tmp_path, capsys, monkeypatch, variable, engine):
    from spurious_diag.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "Q:", "completion": " A"}) + "\n")
    monkeypatch.setenv(variable, "true")
    code = main(["train", "--model", str(shipped_base_dir()), "--data", str(data), "--out", str(tmp_path / "o"),
                 "--freeze-layers", "1", "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{engine} through accelerate needs --device cuda" in err[0]
    assert not (tmp_path / "o").exists() and os.environ[variable] == "true"
