"""Geometry tests run torch single-threaded.

This machine's two cores are shared: with another busy process, multi-threaded
LAPACK calls here were measured 50× slower (a 0.3 s test took 23 s); one thread
keeps the suite's runtime predictable (DESIGN.md §5 saw the same with tiny models).
"""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
