"""The exploration notebook runs top to bottom (issue #6).

The notebook is stored with the outputs of one real execution, so it reads well on GitHub. The test
executes a copy in a temporary working directory and fails on any cell error. To refresh the stored
outputs after editing the notebook, run this module as a script (same execution code):

    python tests/test_notebook.py
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_spurious_forgetting.ipynb"
CELL_TIMEOUT_S = 600  # the longest cell (the diagnosis) takes about a minute on one thread


def execute_notebook(path: Path, work_dir: Path, *, tmp_dir: Path | None = None, timeout: int = CELL_TIMEOUT_S,
                     record_timing: bool = True):
    """Execute the notebook at ``path`` with ``work_dir`` as the kernel's working directory.

    ``tmp_dir`` (default ``work_dir``) becomes the kernel's ``TMPDIR``, where the notebook keeps its checkpoints.

    Returns the executed notebook (the file at ``path`` is not modified). Raises
    ``nbclient.exceptions.CellExecutionError`` on the first cell that raises.
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # The kernel inherits this process's environment. MPLBACKEND is unset (CI sets Agg) so the kernel
    # picks its inline backend as in a user's Jupyter, and the stored figures are the ones users see.
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TMPDIR": os.fspath(tmp_dir or work_dir),
           "MPLBACKEND": None}
    saved = {key: os.environ.get(key) for key in env}
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=False,
                                record_timing=record_timing, resources={"metadata": {"path": os.fspath(work_dir)}})
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_notebook_runs_top_to_bottom(tmp_path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook_dir = NOTEBOOK.parent
    before = {p.name: _digest(p) for p in notebook_dir.iterdir() if p.is_file()}
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()

    started = time.perf_counter()
    executed = execute_notebook(NOTEBOOK, work, tmp_dir=tmp)
    elapsed = time.perf_counter() - started
    print(f"notebook executed in {elapsed:.0f} s")

    errors = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors
    # It writes nothing in its working directory or next to itself, and removes its checkpoints
    # (torch may leave caches of its own in TMPDIR).
    assert not any(work.iterdir()), sorted(p.name for p in work.iterdir())
    assert not list(tmp.glob("spurious-diag-notebook-*"))
    assert {p.name: _digest(p) for p in notebook_dir.iterdir() if p.is_file()} == before


def main() -> int:
    """Execute the notebook and store it with its outputs (no timing metadata, to keep diffs small)."""
    import nbformat

    with tempfile.TemporaryDirectory(prefix="spurious-diag-notebook-") as work:
        started = time.perf_counter()
        executed = execute_notebook(NOTEBOOK, Path(work), record_timing=False)
        elapsed = time.perf_counter() - started
    nbformat.write(executed, NOTEBOOK)
    print(f"executed {NOTEBOOK.name} in {elapsed:.0f} s and stored its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
