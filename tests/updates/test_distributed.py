"""The audit under torch.distributed: shares balanced by bytes, results equal to one process,
and a failure on any rank ending every rank the same way (gloo on CPU, real processes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spurious_diag.updates.shares import share_by_size
from tests.updates.test_engine import _perturbed

ROOT = Path(__file__).resolve().parents[2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**9), max_size=60), st.integers(min_value=1, max_value=8))
def test_shares_cover_every_tensor_once_and_differ_by_at_most_one_tensor(sizes, world_size):
    shares = share_by_size(sizes, world_size)
    assert sorted(i for share in shares.indices for i in share) == list(range(len(sizes)))
    assert [sum(sizes[i] for i in share) for share in shares.indices] == list(shares.nbytes)
    assert max(shares.nbytes) - min(shares.nbytes) <= max(sizes, default=0)
    assert shares == share_by_size(list(sizes), world_size)  # every rank computes the same shares


def test_shares_refuse_an_empty_world():
    with pytest.raises(ValueError, match="world_size"):
        share_by_size([1, 2], 0)


def _chain(make_model, tmp_path: Path, n: int = 4) -> list[str]:
    chain = []
    for i in range(n):
        model = make_model("llama", seed=0)
        model.load_state_dict(_perturbed(model, i) if i else model.state_dict())
        model.save_pretrained(tmp_path / f"c{i}")
        chain.append(str(tmp_path / f"c{i}"))
    return chain


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


def _ranks(args: list[str], world_size: int = 2) -> list[subprocess.CompletedProcess]:
    """Start ``python -m spurious_diag ARGS`` as every rank of a gloo group, with the environment
    torchrun would give them (so each rank's own exit code and stderr can be read)."""
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "spurious_diag", *args], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE=str(world_size),
                                       RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world_size)))
             for rank in range(world_size)]
    out = []
    for rank, proc in enumerate(procs):
        stdout, stderr = proc.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


@pytest.mark.slow
def test_torchrun_audit_equals_one_process(make_model, tmp_path):
    chain = _chain(make_model, tmp_path)
    one = tmp_path / "one"
    done = subprocess.run([sys.executable, "-m", "spurious_diag", "-q", "audit", *chain, "--rank", "4",
                           "--out", str(one)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    two = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), "-m", "spurious_diag", "-q", "audit", *chain,
                           "--rank", "4", "--out", str(two)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, exact in (("updates.csv", ["update", "name", "layer", "module", "part", "status", "rank"]),
                        ("pairs.csv", ["update_a", "update_b", "name", "layer", "module", "part", "status"])):
        a, b = pd.read_csv(one / name), pd.read_csv(two / name)
        assert len(a) > 0 and list(a.columns) == list(b.columns)
        pd.testing.assert_frame_equal(a[exact], b[exact])  # the same rows, in the same order
        numeric = [c for c in a.columns if c not in exact and pd.api.types.is_float_dtype(a[c])]
        angles = [c for c in numeric if c.endswith("_deg")]
        pd.testing.assert_frame_equal(a[angles], b[angles], rtol=0, atol=1e-4)
        rest = [c for c in numeric if c not in angles]
        pd.testing.assert_frame_equal(a[rest], b[rest], rtol=1e-6, atol=1e-12)
    shared = json.loads((two / "summary.json").read_text())["distributed"]
    assert shared["world_size"] == 2 and sum(shared["tensors_per_rank"]) == len(pd.read_csv(one / "updates.csv")
                                                                                .query("update == 1"))
    largest = max(p.numel() * p.element_size() for p in make_model("llama").state_dict().values())
    assert abs(shared["bytes_per_rank"][0] - shared["bytes_per_rank"][1]) <= largest
    assert json.loads((one / "summary.json").read_text())["distributed"]["world_size"] == 1


@pytest.mark.slow
def test_a_failure_ends_every_rank_with_one_line_and_no_output(make_model, tmp_path):
    chain = _chain(make_model, tmp_path, n=3)
    other = make_model("llama", num_layers=3)  # a deeper model: the architectures do not match
    other.save_pretrained(tmp_path / "deeper")
    out = tmp_path / "out"
    results = _ranks(["audit", chain[0], chain[1], str(tmp_path / "deeper"), "--out", str(out)])
    lines = [r.stderr.strip().splitlines()[-1] for r in results]
    assert [r.returncode for r in results] == [5, 5], [r.stderr[-2000:] for r in results]
    assert lines[0] == lines[1] and lines[0].startswith("spurious-diag audit: error:")
    assert not out.exists()


@pytest.mark.slow
def test_a_non_empty_out_stops_every_rank_before_any_work(make_model, tmp_path):
    chain = _chain(make_model, tmp_path, n=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    results = _ranks(["audit", *chain, "--out", str(out)])
    assert [r.returncode for r in results] == [7, 7]
    assert all("not empty" in r.stderr for r in results)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def _faulty_rank(rank: int, port: int, chain: list[str], bad: str, result_dir: str) -> None:
    """One rank of a gloo group auditing ``chain`` whose CKPT_2 cannot read tensor ``bad``."""
    import torch.distributed as dist

    from spurious_diag import AuditOptions, audit
    from spurious_diag.errors import CorruptCheckpointError, SpuriousDiagError
    from spurious_diag.io.checkpoint import Checkpoint
    from spurious_diag.io.loader import load_checkpoint

    class Unreadable:
        """A reader whose one tensor fails as damaged bytes would, while its header reads fine."""

        def __init__(self, inner):
            self.inner = inner

        def infos(self):
            return self.inner.infos()

        def _check(self, name):
            if name == bad:
                raise CorruptCheckpointError("cannot read tensor (damaged bytes)", chain[2], name)

        def load(self, name):
            self._check(name)
            return self.inner.load(name)

        def load_rows(self, name, start, stop):
            self._check(name)
            return self.inner.load_rows(name, start, stop)

    torch.set_num_threads(1)
    # A short timeout: were the failure not shared, rank 0 would wait here, and the test must fail, not hang.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    try:
        last = load_checkpoint(chain[2])
        last = Checkpoint(last.path, last.format, [Unreadable(r) for r in last._readers], config=last.config,
                          tied=last.tied)
        audit([chain[0], chain[1], last], AuditOptions(rank=4), progress=False)
        message = "no error"
    except SpuriousDiagError as exc:
        message = f"{type(exc).__name__} {exc.exit_code}: {exc}"
    finally:
        dist.destroy_process_group()
    Path(result_dir, f"rank{rank}.txt").write_text(message)


@pytest.mark.slow
def test_an_unreadable_tensor_on_one_rank_fails_both(make_model, tmp_path):
    """Only the rank that owns the tensor reads it; the other must not wait forever, and both
    raise the same error."""
    from spurious_diag.io.loader import load_checkpoint

    chain = _chain(make_model, tmp_path, n=3)
    ckpt = load_checkpoint(chain[2])
    names = list(ckpt)
    sizes = [ckpt.info(n).numel * 4 for n in names]
    bad = names[share_by_size(sizes, 2).indices[1][0]]  # a tensor of rank 1
    torch.multiprocessing.start_processes(_faulty_rank, args=(_free_port(), chain, bad, str(tmp_path)), nprocs=2,
                                          start_method="spawn")
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert messages[0] == messages[1]
    assert messages[0].startswith("CorruptCheckpointError 4:") and bad in messages[0]
