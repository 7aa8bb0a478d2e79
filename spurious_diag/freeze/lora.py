"""LoRA with the paper's freeze: PEFT adapters only on blocks k and above.

``add_lora_above(model, k, rank=R)`` wraps a causal LM with PEFT LoRA adapters whose
``layers_to_transform`` is blocks k..L−1, so the embeddings and blocks 0..k−1 get no adapter and,
as every base weight under LoRA, are never updated: Freeze(k) on the adapter's side. The result
saves as a standard PEFT adapter directory (``adapter_config.json``, ``adapter_model.safetensors``)
that ``spurious-diag audit BASE ADAPTER_DIR`` reads factored.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

import torch

from ..errors import UsageError
from ..io.layer_map import parse_param_name
from .freezing import _num_layers

__all__ = ["LoraPlacement", "add_lora_above", "base_state", "DEFAULT_LORA_MODULES"]

logger = logging.getLogger(__name__)

# PEFT's name for every linear layer of the blocks (not the LM head, not the embeddings).
DEFAULT_LORA_MODULES = ("all-linear",)


@dataclass(frozen=True)
class LoraPlacement:
    """Where the adapters went.

    Attributes:
        rank, alpha: LoRA's rank r and scale numerator (the update is alpha / r · B A).
        first_block: k: blocks 0..k−1 and the embeddings have no adapter.
        num_layers: L, the model's blocks.
        modules: the target modules asked for (PEFT names, or ``all-linear``).
        adapted: the base weights that got an adapter (names as stored in the base checkpoint).
        trainable_params, total_params: LoRA parameters, and all parameters with them.
    """

    rank: int
    alpha: float
    first_block: int
    num_layers: int
    modules: tuple[str, ...]
    adapted: tuple[str, ...]
    trainable_params: int
    total_params: int

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.total_params

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["trainable_fraction"] = self.trainable_fraction
        return out


def add_lora_above(model: torch.nn.Module, k: int, *, rank: int, alpha: Optional[float] = None,
                   modules: Sequence[str] = DEFAULT_LORA_MODULES, dropout: float = 0.0) -> tuple[Any, LoraPlacement]:
    """Wrap ``model`` with LoRA adapters on blocks ``k``..L−1 only (PEFT ``layers_to_transform``).

    Args:
        model: an HF causal LM (its weights are not changed; PEFT sets them ``requires_grad=False``).
        k: the first block with adapters (0: every block); the embeddings never get one.
        rank: LoRA rank r ≥ 1.
        alpha: scale numerator (default ``2 * rank``).
        modules: PEFT target module names (e.g. ``q_proj``, ``v_proj``), or ``all-linear``.
        dropout: LoRA dropout.

    Returns:
        (the PEFT model, its :class:`LoraPlacement`).

    Raises:
        UsageError: k outside 0..L−1, a rank < 1, or target modules that match nothing in blocks ≥ k.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UsageError("LoRA training needs PEFT: pip install peft (or spurious-diag[lora])") from None

    num_layers = _num_layers(model, [name for name, _ in model.named_parameters()])
    if not 0 <= k < num_layers:
        raise UsageError(f"--freeze-layers {k} with LoRA leaves no block for adapters (the model has {num_layers})")
    if rank < 1:
        raise UsageError(f"LoRA rank must be >= 1, got {rank}")
    alpha = float(2 * rank if alpha is None else alpha)
    # PEFT's own "all-linear" cannot be combined with layers_to_transform: name the block's linear layers.
    target = _block_linear_names(model, num_layers) if tuple(modules) == ("all-linear",) else list(modules)
    from transformers.pytorch_utils import Conv1D

    conv1d = any(isinstance(m, Conv1D) for m in model.modules())  # GPT-2 style (in, out) weights
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target, fan_in_fan_out=conv1d,
                        layers_to_transform=list(range(k, num_layers)) if k > 0 else None, task_type="CAUSAL_LM")
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as exc:  # PEFT: "Target modules ... not found in the base model"
        raise UsageError(f"LoRA target modules {list(modules)}: {exc}") from None
    adapted = tuple(sorted({_base_name(n) for n, _ in wrapped.get_base_model().named_parameters() if "lora_A" in n}))
    low = [n for n in adapted if (parse_param_name(n, num_layers).layer or 0) < k]
    if low:  # PEFT matched the block index of another ModuleList: refuse rather than train below k
        raise UsageError(f"LoRA adapters landed below block {k}: {low[:3]}")
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    placement = LoraPlacement(rank, alpha, k, num_layers, tuple(modules), adapted, trainable, total)
    logger.info("LoRA r=%d alpha=%g on %d weights of blocks %d..%d (%.2f%% of the parameters trainable)",
                rank, alpha, len(adapted), k, num_layers - 1, 100 * placement.trainable_fraction)
    return wrapped, placement


def _block_linear_names(model: torch.nn.Module, num_layers: int) -> list[str]:
    """The names (last component) of the linear layers inside the blocks, e.g. ``q_proj`` … ``down_proj``
    (GPT-2's ``Conv1D`` included); not the LM head, which is outside the blocks."""
    from transformers.pytorch_utils import Conv1D

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, Conv1D)):
            layer = parse_param_name(f"{name}.weight", num_layers).layer
            if layer is not None and 0 <= layer < num_layers:
                names.add(name.rsplit(".", 1)[-1])
    if not names:
        raise UsageError("no linear layers found inside the model's blocks for LoRA")
    return sorted(names)


def _base_name(peft_param: str) -> str:
    """``model.layers.3.self_attn.q_proj.lora_A.default.weight`` → ``model.layers.3.self_attn.q_proj.weight``."""
    head, _, _ = peft_param.partition(".lora_")
    return f"{head}.weight"


def base_state(peft_model: Any) -> Mapping[str, torch.Tensor]:
    """The base model's weights inside a PEFT model, under their original names (no LoRA factors):
    what must be bit-identical to the base checkpoint after training."""
    state = {}
    for name, tensor in peft_model.get_base_model().state_dict().items():
        if ".lora_" in name:
            continue
        state[name.replace(".base_layer.", ".")] = tensor
    return state
