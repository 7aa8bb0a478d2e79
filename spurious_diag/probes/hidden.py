"""Hidden states of a causal LM at the last prompt token, per layer.

``output_hidden_states=True`` returns L + 1 tensors for a model of L blocks. Index 0 is the
embedding output; index l (1 ≤ l < L) is the output of block l − 1. For most HF decoders
(Llama, Mistral, Qwen2, Gemma, GPT-2, ... in transformers ≥ 5) index L is the output of the
last block *after the final norm* (the LM head's input), so layer L of these tables means
"block L − 1 + final norm".
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError, UsageError

__all__ = ["prompt_ids", "last_prompt_hidden_states", "model_device"]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def prompt_ids(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt with the tokenizer's own special tokens (e.g. ``<bos>``), as in training."""
    return [list(tokenizer(p).input_ids) for p in prompts]


@torch.no_grad()
def last_prompt_hidden_states(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """Residual stream at the last prompt token, every layer.

    Args:
        model: causal LM (evaluated in eval mode; its mode is restored).
        tokenizer: the model's tokenizer; needs a pad id (or an eos id used as pad).
        prompts: N prompts; each is encoded as in training (special tokens included).
        batch_size: prompts per forward pass (right-padded; the pad never precedes a real
            token, so the last real token's state is unaffected by padding).

    Returns:
        Float32 CPU tensor of shape (L + 1) × N × D (D = hidden size), layer 0 = embeddings.
    """
    if not prompts:
        raise InvalidDataError("no prompts")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise UsageError("the tokenizer has neither a pad nor an eos token to pad with")
    device = model_device(model)
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        encoded = prompt_ids(tokenizer, prompts)
        for start in range(0, len(encoded), batch_size):
            batch = encoded[start : start + batch_size]
            length = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), length), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                mask[row, : len(ids)] = 1
            out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), output_hidden_states=True,
                        use_cache=False)
            last = (mask.sum(dim=1) - 1).to(device)  # B
            rows = torch.arange(len(batch), device=device)
            chunks.append(torch.stack([h[rows, last].float().cpu() for h in out.hidden_states]))  # (L+1)×B×D
    finally:
        model.train(was_training)
    return torch.cat(chunks, dim=1)
