"""spurious_diag: tell whether a fine-tuned LLM forgot a task, or only its alignment.

The pipeline, one sub-package each: load (``io``) → extract and measure
(``geometry``, ``audit``) → probe → plot → report.
"""

from .errors import SpuriousDiagError
from .io import Checkpoint, ParamInfo, load_chain, load_checkpoint, parse_param_name

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "SpuriousDiagError",
    "Checkpoint",
    "ParamInfo",
    "load_checkpoint",
    "load_chain",
    "parse_param_name",
]
