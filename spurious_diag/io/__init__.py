"""Load: checkpoints from disk or memory, chains of them, and the layer map."""

from .chain import is_chain_dir, list_chain, load_chain
from .checkpoint import Checkpoint, TensorInfo
from .layer_map import ParamInfo, parse_param_name
from .loader import load_checkpoint

__all__ = [
    "Checkpoint",
    "TensorInfo",
    "ParamInfo",
    "load_checkpoint",
    "load_chain",
    "list_chain",
    "is_chain_dir",
    "parse_param_name",
]
