"""Map stored parameter names to (block index, normalized module) — the layer map.

Every architecture names its weights differently; the rest of the package
only sees :class:`ParamInfo`. The block index is parsed with an anchored
regular expression (``(^|.)(layers|h|blocks|block|layer).(\\d+).``), never by
substring tests: ``'layers.1' in name`` also matches ``layers.10``–``layers.19``.

Layer numbering (DESIGN.md §1): −1 for embeddings, 0..L−1 for blocks, L for
the final norm and the LM head, ``None`` for anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

__all__ = ["ParamInfo", "parse_param_name", "num_layers_from_config", "num_layers_of", "FUSED_LAYOUTS"]

_BLOCK_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.(.+)$")

# Prefixes that wrap the real parameter name (PEFT, multimodal text towers, DDP).
_WRAPPER_PREFIXES = (
    "base_model.model.",
    "module.",
    "_orig_mod.",
)

# How a fused projection is laid out along its output axis (after Conv1D transposition):
#   "contiguous":  [q | k | v] (or [gate | up]) blocks, one after the other;
#   "interleaved_per_head": (heads, 3, head_dim) — GPT-NeoX query_key_value.
FUSED_LAYOUTS = ("contiguous", "interleaved_per_head")

# Module names inside a block: stored leaf path -> normalized name.
_BLOCK_MODULES: dict[str, str] = {
    # attention (Llama, Mistral, Qwen2, Gemma, Phi, Phi-3)
    "self_attn.q_proj": "attn.q_proj",
    "self_attn.k_proj": "attn.k_proj",
    "self_attn.v_proj": "attn.v_proj",
    "self_attn.o_proj": "attn.o_proj",
    "self_attn.dense": "attn.o_proj",  # Phi-1/2
    "self_attn.qkv_proj": "attn.qkv_proj",  # Phi-3
    "self_attn.q_norm": "attn.q_norm",  # Gemma3, Qwen3
    "self_attn.k_norm": "attn.k_norm",
    # GPT-2
    "attn.c_attn": "attn.qkv_proj",
    "attn.c_proj": "attn.o_proj",
    "mlp.c_fc": "mlp.up_proj",
    "mlp.c_proj": "mlp.down_proj",
    "ln_1": "norm.input",
    "ln_2": "norm.post_attn",
    # GPT-NeoX / Pythia
    "attention.query_key_value": "attn.qkv_proj",
    "attention.dense": "attn.o_proj",
    "mlp.dense_h_to_4h": "mlp.up_proj",
    "mlp.dense_4h_to_h": "mlp.down_proj",
    # MLPs
    "mlp.gate_proj": "mlp.gate_proj",
    "mlp.up_proj": "mlp.up_proj",
    "mlp.down_proj": "mlp.down_proj",
    "mlp.gate_up_proj": "mlp.gate_up_proj",  # Phi-3
    "mlp.fc1": "mlp.up_proj",  # Phi-1/2
    "mlp.fc2": "mlp.down_proj",
    # norms
    "input_layernorm": "norm.input",
    "post_attention_layernorm": "norm.post_attn",
    "pre_feedforward_layernorm": "norm.pre_ffn",
    "post_feedforward_layernorm": "norm.post_ffn",
}

# Names outside the blocks: stored path (without wrapper prefixes) -> (normalized name, position)
# where position is "embed" (layer −1) or "head" (layer L).
_TOP_MODULES: dict[str, tuple[str, str]] = {
    "model.embed_tokens": ("embed_tokens", "embed"),
    "model.language_model.embed_tokens": ("embed_tokens", "embed"),
    "transformer.wte": ("embed_tokens", "embed"),
    "transformer.wpe": ("embed_positions", "embed"),
    "gpt_neox.embed_in": ("embed_tokens", "embed"),
    "embed_tokens": ("embed_tokens", "embed"),
    "wte": ("embed_tokens", "embed"),
    "wpe": ("embed_positions", "embed"),
    "embed_in": ("embed_tokens", "embed"),
    "model.norm": ("norm.final", "head"),
    "model.language_model.norm": ("norm.final", "head"),
    "model.final_layernorm": ("norm.final", "head"),
    "transformer.ln_f": ("norm.final", "head"),
    "gpt_neox.final_layer_norm": ("norm.final", "head"),
    "norm": ("norm.final", "head"),
    "ln_f": ("norm.final", "head"),
    "final_layer_norm": ("norm.final", "head"),
    "final_layernorm": ("norm.final", "head"),
    "lm_head": ("lm_head", "head"),
    "embed_out": ("lm_head", "head"),
}

# Normalized modules whose stored weight is a GPT-2 Conv1D, i.e. (in, out).
_CONV1D_STORED = {
    ("gpt2", "attn.qkv_proj"),
    ("gpt2", "attn.o_proj"),
    ("gpt2", "mlp.up_proj"),
    ("gpt2", "mlp.down_proj"),
}


@dataclass(frozen=True)
class ParamInfo:
    """What the layer map knows about one stored parameter.

    Attributes:
        name: the stored name, unchanged.
        layer: −1 embeddings, 0..L−1 blocks, L final norm / LM head, ``None`` otherwise
            (also ``None`` for final norm / head when L is unknown).
        module: normalized module name, e.g. ``attn.q_proj``, ``mlp.down_proj``,
            ``embed_tokens``, ``norm.final``, ``lm_head``; the raw sub-path for
            modules the map does not know.
        param: the leaf, usually ``weight`` or ``bias``.
        family: ``gpt2``, ``gpt_neox`` or ``generic`` — the naming family the name belongs to.
        transposed: True when the stored 2-D weight is (in, out) (GPT-2 Conv1D), so
            analysis must transpose it to (out, in).
        fused: ``None``, or the layout of a fused projection along the output axis:
            ``"contiguous"`` (GPT-2 ``c_attn``, Phi-3 ``qkv_proj`` / ``gate_up_proj``) or
            ``"interleaved_per_head"`` (GPT-NeoX ``query_key_value``).
        parts: names of the fused parts in order, e.g. ``("q", "k", "v")``; empty if not fused.
        is_lora: True for PEFT ``lora_A`` / ``lora_B`` factors (module is that of the wrapped layer).
    """

    name: str
    layer: Optional[int]
    module: str
    param: str
    family: str = "generic"
    transposed: bool = False
    fused: Optional[str] = None
    parts: tuple[str, ...] = ()
    is_lora: bool = False

    @property
    def position(self) -> str:
        """``embed``, ``block``, ``head`` or ``other``."""
        if self.layer is None:
            return "head" if self.module in ("norm.final", "lm_head") else "other"
        if self.layer < 0:
            return "embed"
        return "block" if self.module not in ("norm.final", "lm_head") else "head"


ConfigArg = Union[None, int, Mapping[str, Any], Any]


def num_layers_from_config(config: ConfigArg) -> Optional[int]:
    """Number of transformer blocks from an int, a config dict or a ``PretrainedConfig``."""
    if config is None:
        return None
    if isinstance(config, bool):
        raise TypeError("config must be an int, a mapping or a PretrainedConfig, not bool")
    if isinstance(config, int):
        return config
    get = config.get if isinstance(config, Mapping) else (lambda k, d=None: getattr(config, k, d))
    text = get("text_config")
    if text is not None and get("num_hidden_layers") is None:
        return num_layers_from_config(text)
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = get(key)
        if isinstance(value, int):
            return value
    return None


def num_layers_of(config: ConfigArg, names: Iterable[str]) -> Optional[int]:
    """Number of transformer blocks: from ``config`` when it says, else one more than the deepest
    block index among the parameter ``names``; None when neither tells.

    >>> num_layers_of(None, ["model.embed_tokens.weight", "model.layers.3.mlp.up_proj.weight"])
    4
    >>> num_layers_of({"num_hidden_layers": 30}, []), num_layers_of(None, ["lm_head.weight"])
    (30, None)
    """
    from_config = num_layers_from_config(config)
    if from_config is not None:
        return from_config
    blocks = [p.layer for p in map(parse_param_name, names) if p.layer is not None and p.layer >= 0]
    return max(blocks) + 1 if blocks else None


def _strip_wrappers(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                changed = True
    return name


def _family(name: str) -> str:
    if name.startswith("transformer.") or name.startswith(("wte.", "wpe.", "h.")) or ".attn.c_attn." in name:
        return "gpt2"
    if name.startswith("gpt_neox.") or name.startswith("embed_out.") or ".attention.query_key_value." in name:
        return "gpt_neox"
    return "generic"


def _fused_layout(module: str, family: str) -> tuple[Optional[str], tuple[str, ...]]:
    if module == "attn.qkv_proj":
        return ("interleaved_per_head" if family == "gpt_neox" else "contiguous"), ("q", "k", "v")
    if module == "mlp.gate_up_proj":
        return "contiguous", ("gate", "up")
    return None, ()


def parse_param_name(name: str, config: ConfigArg = None) -> ParamInfo:
    """Parse one stored parameter name.

    Args:
        name: the name as stored, e.g. ``model.layers.10.self_attn.q_proj.weight``.
        config: the number of blocks L (int), a config dict, or a ``PretrainedConfig``;
            needed to number the final norm and LM head (layer L). Without it those get
            ``layer=None`` and ``position == "head"``.

    Returns:
        A :class:`ParamInfo`. Unknown names get ``layer=None`` and their raw path as module.

    >>> parse_param_name("model.layers.10.mlp.down_proj.weight").layer
    10
    >>> parse_param_name("model.layers.1.self_attn.q_proj.weight").module
    'attn.q_proj'
    >>> parse_param_name("lm_head.weight", config=30).layer
    30
    """
    num_layers = num_layers_from_config(config)
    stripped = _strip_wrappers(name)
    is_lora = False
    lora = re.search(r"\.lora_(A|B)(?:\.[^.]+)?\.weight$", stripped)
    if lora is not None:
        is_lora = True
        stripped = stripped[: lora.start()] + ".weight"
        param = f"lora_{lora.group(1)}"
    else:
        param = stripped.rsplit(".", 1)[-1] if "." in stripped else stripped
    path = stripped.rsplit(".", 1)[0] if "." in stripped else stripped
    # PEFT wraps the base layer: "...q_proj.base_layer.weight".
    if path.endswith(".base_layer"):
        path = path[: -len(".base_layer")]
    family = _family(stripped)

    match = _BLOCK_RE.search(stripped)
    if match is not None:
        layer = int(match.group(1))
        leaf = match.group(2)
        sub = leaf.rsplit(".", 1)[0] if "." in leaf else leaf
        if sub.endswith(".base_layer"):
            sub = sub[: -len(".base_layer")]
        if lora is not None:
            sub = leaf[: leaf.find(".lora_")] if ".lora_" in leaf else sub
        module = _BLOCK_MODULES.get(sub, sub)
        fused, parts = _fused_layout(module, family)
        transposed = (family, module) in _CONV1D_STORED and param == "weight"
        return ParamInfo(name, layer, module, param, family, transposed, fused, parts, is_lora)

    top = _TOP_MODULES.get(path)
    if top is not None:
        module, position = top
        layer = -1 if position == "embed" else num_layers
        return ParamInfo(name, layer, module, param, family, False, None, (), is_lora)
    return ParamInfo(name, None, path, param, family, False, None, (), is_lora)
