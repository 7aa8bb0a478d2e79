"""A comparison killed with SIGTERM stops its worker processes too, and ``--resume`` takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the worker processes")
def test_sigterm_stops_the_workers_and_leaves_a_resumable_comparison(tiny_base_dir, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "spurious_diag", "compare", "--methods", "SEQ,Freeze(1)", "--seeds", "0,1",
               "--jobs", "2", "--base", str(tiny_base_dir), "--out", str(out)]
    process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline, workers = time.monotonic() + 120, set()
    while time.monotonic() < deadline and process.poll() is None:
        workers |= _children(process.pid)
        if (out / "work" / "task0" / "plain").is_dir() and len(workers) >= 2:
            break  # the pool is up and the first unit has begun
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read()
    workers |= _children(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err
    time.sleep(2)
    assert not [pid for pid in workers if _alive(pid)]
    assert (out / "config.json").is_file() and not (out / "work" / "task0" / "plain" / "done.json").exists()
