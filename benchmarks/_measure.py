"""Measurement helpers shared by the benchmarks: RssAnon (not ru_maxrss), its peak, and wall time.

``ru_maxrss`` counts memory-mapped file pages, so a memory-mapped read looks as
big as an eager one. ``RssAnon`` from ``/proc/self/status`` counts only
anonymous memory: what a process really allocated.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


def rss_anon_bytes() -> int:
    """Current RssAnon of this process, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("RssAnon not in /proc/self/status (Linux only)")


@dataclass
class Measurement:
    seconds: float = 0.0
    baseline_bytes: int = 0
    peak_bytes: int = 0

    @property
    def growth_bytes(self) -> int:
        """Peak RssAnon above the baseline taken when the measurement started."""
        return self.peak_bytes - self.baseline_bytes


@contextmanager
def measure(poll_s: float = 0.002) -> Iterator[Measurement]:
    """Time a block and track its peak RssAnon with a polling thread."""
    m = Measurement(baseline_bytes=rss_anon_bytes())
    m.peak_bytes = m.baseline_bytes
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            m.peak_bytes = max(m.peak_bytes, rss_anon_bytes())
            time.sleep(poll_s)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - start
        stop.set()
        thread.join()
        m.peak_bytes = max(m.peak_bytes, rss_anon_bytes())


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"
