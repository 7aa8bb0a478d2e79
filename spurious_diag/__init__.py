"""spurious_diag: tell whether a fine-tuned LLM forgot a task, or only its alignment.

The pipeline, one sub-package each: load (``io``) → extract and measure
(``geometry``, ``audit``) → probe → plot → report.
"""

from .errors import SpuriousDiagError
from .io import Checkpoint, ParamInfo, load_chain, load_checkpoint, parse_param_name
from .audit import audit  # noqa: E402  (the function shadows the submodule's name on purpose: DESIGN §1)


def __getattr__(name: str):  # heavy parts load on first use, so `import spurious_diag` stays light
    if name in ("freeze_bottom_layers", "verify_frozen"):
        from . import freeze

        return getattr(freeze, name)
    if name == "diagnose":
        from .probes import diagnose

        return diagnose
    if name == "principal_angles":
        from .geometry import principal_angles

        return principal_angles
    raise AttributeError(f"module 'spurious_diag' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "__version__",
    "SpuriousDiagError",
    "Checkpoint",
    "ParamInfo",
    "load_checkpoint",
    "load_chain",
    "parse_param_name",
    "principal_angles",
    "audit",
    "freeze_bottom_layers",
    "verify_frozen",
    "diagnose",
]
