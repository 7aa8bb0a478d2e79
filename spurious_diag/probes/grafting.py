"""Layer grafting: put the pre-Task-1 weights of some blocks into the post-Task-1 model.

Arms (each on a fresh copy of the post-Task-1 model, DESIGN.md §3):

- ``bottom`` k = 0..L: blocks [0, k) from the source (k = 0 is the post-Task-1 model itself);
- ``top`` k = 1..L: blocks [L − k, L), the comparison (if alignment lives at the bottom, bottom
  grafts restore the old task and top grafts of the same size do not);
- ``embeddings``: the embedding tensors alone (layer −1).

Blocks are selected by the exact block index of :func:`~spurious_diag.io.parse_param_name`
(never by substring). The final norm and the LM head (layer L) and unparsed tensors are never
grafted. When the input embedding is tied to the LM head (one tensor), the embeddings arm would
swap the head too, so it is skipped and the frame says why. Every spliced tensor is checked
bit-identical to its source after the copy (in the model's dtype; an exact upcast passes).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import MismatchError, UsageError
from ..io.layer_map import ParamInfo, num_layers_of, parse_param_name
from ..training.evaluate import EVAL_BATCH_SIZE, evaluate_records
from .records import as_probe_records

__all__ = ["GraftReport", "GRAFT_COLUMNS", "model_num_layers", "splice_tensors", "graft", "embeddings_tied_to_head", "grafting_curve"]

logger = logging.getLogger(__name__)

GRAFT_COLUMNS = ["arm", "k", "blocks", "embeddings", "n_tensors", "old_acc", "old_first_token_acc", "new_acc",
                 "new_first_token_acc", "status"]

SourceArg = Union[torch.nn.Module, Mapping[str, torch.Tensor]]


@dataclass
class GraftReport:
    """What :func:`graft` copied: ``names`` of the spliced tensors, the ``blocks`` and whether the
    embeddings were included, and ``cast`` (names whose source dtype differed, copied exactly)."""

    blocks: tuple[int, ...]
    embeddings: bool
    names: list[str] = field(default_factory=list)
    cast: list[str] = field(default_factory=list)


def model_num_layers(model: torch.nn.Module) -> int:
    """Number of transformer blocks, from the config or else from the parameter names."""
    found = num_layers_of(getattr(model, "config", None), (n for n, _ in model.named_parameters()))
    if found is None:
        raise MismatchError("cannot find transformer blocks in the model's parameter names")
    return found


def embeddings_tied_to_head(model: torch.nn.Module) -> bool:
    """True when an embedding tensor (layer −1) is the same storage as a head tensor (layer L)."""
    num_layers = model_num_layers(model)
    embed, head = set(), set()
    for name, p in model.named_parameters(remove_duplicate=False):
        info = parse_param_name(name, num_layers)
        if info.layer == -1:
            embed.add(p.data_ptr())
        elif info.position == "head":
            head.add(p.data_ptr())
    return bool(embed & head)


def _source_state(source: SourceArg) -> Mapping[str, torch.Tensor]:
    if isinstance(source, torch.nn.Module):
        return source.state_dict()
    return source


@torch.no_grad()
def splice_tensors(target: torch.nn.Module, source: SourceArg, select: Callable[[ParamInfo], bool]
                   ) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``target`` whose parsed name ``select`` accepts from ``source``, in place.

    Tensors that share storage (tied embeddings and LM head) are copied once, under the first
    name that selects them. Each copied tensor is checked bit-identical to its source afterwards
    (in the target's dtype; a source of another dtype must convert exactly).

    Args:
        target: the model to modify.
        source: a model, a state dict, or a :class:`~spurious_diag.io.Checkpoint` mapping (a name
            missing from it is looked up through ``source.tied`` when it has one).
        select: called with the :class:`~spurious_diag.io.layer_map.ParamInfo` of each name of
            ``target.state_dict()`` (its ``layer``: −1 embeddings, 0..L−1 blocks, L final norm
            and head, None otherwise).

    Returns:
        (names copied, names whose source dtype differed and was copied exactly).

    Raises:
        MismatchError: a selected tensor missing from ``source``, of another shape, of a dtype
            that does not convert exactly, or not bit-identical after the copy.
    """
    num_layers = model_num_layers(target)
    state = _source_state(source)
    aliases = {alias: stored for stored, names in getattr(state, "tied", {}).items() for alias in names}
    names: list[str] = []
    cast: list[str] = []
    seen: set[int] = set()
    for name, tensor in target.state_dict(keep_vars=True).items():
        if not select(parse_param_name(name, num_layers)) or tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        key = name if name in state else aliases.get(name)
        if key is None or key not in state:
            raise MismatchError("tensor missing from the source", tensor=name)
        src = state[key]
        if tuple(src.shape) != tuple(tensor.shape):
            raise MismatchError(f"shape {tuple(src.shape)} in the source, {tuple(tensor.shape)} in the target",
                                tensor=name)
        expected = src.detach().to(device=tensor.device, dtype=tensor.dtype)
        tensor.data.copy_(expected)
        if not torch.equal(tensor.data, expected):
            raise MismatchError("spliced tensor is not bit-identical to its source", tensor=name)
        if src.dtype != tensor.dtype:
            if not torch.equal(expected.to(src.dtype), src.detach().to(expected.device)):
                raise MismatchError(f"source dtype {src.dtype} does not convert exactly to {tensor.dtype}", tensor=name)
            cast.append(name)
        names.append(name)
    return names, cast


@torch.no_grad()
def graft(target: torch.nn.Module, source: SourceArg, blocks: Iterable[int], *, embeddings: bool = False) -> GraftReport:
    """Copy the tensors of ``blocks`` (and the embeddings if asked) from ``source`` into ``target``, in place.

    Args:
        target: the model to modify (pass a copy to keep the original).
        source: a model, a state dict, or a :class:`~spurious_diag.io.Checkpoint` mapping with the
            same names and shapes (tied aliases: a name missing from ``source`` is looked up
            through ``source.tied`` when it has one).
        blocks: block indices in [0, L).
        embeddings: also copy the embedding tensors (layer −1).

    Returns:
        :class:`GraftReport`.

    Raises:
        MismatchError: a selected tensor missing from ``source`` or of another shape; a block
            index out of range; a spliced tensor not bit-identical to its source afterwards;
            embeddings requested while tied to the LM head.
    """
    num_layers = model_num_layers(target)
    chosen = tuple(sorted({int(b) for b in blocks}))
    bad = [b for b in chosen if not 0 <= b < num_layers]
    if bad:
        raise MismatchError(f"block indices {bad} outside [0, {num_layers})")
    if embeddings and embeddings_tied_to_head(target):
        raise MismatchError("the embeddings are tied to the LM head: grafting them would swap the head too")
    report = GraftReport(chosen, embeddings)
    layers = set(chosen) | ({-1} if embeddings else set())
    report.names, report.cast = splice_tensors(
        target, source, lambda info: info.layer is not None and info.layer in layers and info.position != "head")
    missing = layers - {parse_param_name(n, num_layers).layer for n in report.names}
    if missing:
        raise MismatchError(f"no tensors found for layers {sorted(missing)} (−1 = embeddings)")
    return report


def _blocks_label(blocks: Sequence[int]) -> str:
    if not blocks:
        return ""
    return f"{blocks[0]}-{blocks[-1]}" if len(blocks) > 1 else str(blocks[0])


def grafting_curve(
    before: SourceArg,
    after: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    old_task_records: Sequence[Any],
    new_task_records: Optional[Sequence[Any]] = None,
    *,
    top: bool = True,
    embeddings_arm: bool = True,
    ks: Optional[Sequence[int]] = None,
    batch_size: int = EVAL_BATCH_SIZE,
    evaluate: Optional[Callable[[PreTrainedModel, Sequence[Any]], tuple[float, float]]] = None,
) -> pd.DataFrame:
    """Old- and new-task accuracy of the post-Task-1 model with grafted blocks, every arm.

    Args:
        before: the pre-Task-1 (source) model or state mapping.
        after: the post-Task-1 model (copied per arm, never modified).
        old_task_records: held-out old-task records (task format, scored with ``<eos>``).
        new_task_records: new-task records, or None to skip ``new_acc``.
        top: include the top-k arm; embeddings_arm: include the embeddings-only arm.
        ks: the k of the bottom and top arms (default every k in 0..L; k = 0 is always run,
            it is the reference). Thin it out for deep models: each k costs a copy and a scoring.
        evaluate: ``(model, records) -> (exact_match, first_token_acc)``; default
            :func:`~spurious_diag.training.evaluate_records` (mean over attributes).

    Returns:
        Frame with :data:`GRAFT_COLUMNS`, one row per arm and k: ``arm`` (bottom / top /
        embeddings), ``k`` (blocks grafted), ``blocks`` (e.g. ``"0-2"``), ``embeddings``,
        ``n_tensors``, the accuracies (NaN when not evaluated) and ``status`` (``ok`` or why skipped).
    """
    old = [r.as_json() for r in as_probe_records(old_task_records)]
    new = [r.as_json() for r in as_probe_records(new_task_records)] if new_task_records else None

    def default_evaluate(model: PreTrainedModel, records: Sequence[Any]) -> tuple[float, float]:
        result = evaluate_records(model, tokenizer, records, batch_size=batch_size)
        return result.exact_match, result.first_token_acc

    score = evaluate or default_evaluate
    num_layers = model_num_layers(after)
    state = _source_state(before)
    chosen = sorted({0} | {int(k) for k in (range(num_layers + 1) if ks is None else ks)})
    bad = [k for k in chosen if not 0 <= k <= num_layers]
    if bad:
        raise UsageError(f"graft depths {bad} outside [0, {num_layers}]")
    arms: list[tuple[str, int, tuple[int, ...], bool]] = [("bottom", k, tuple(range(k)), False) for k in chosen]
    if top:
        arms += [("top", k, tuple(range(num_layers - k, num_layers)), False) for k in chosen if k > 0]
    if embeddings_arm:
        arms.append(("embeddings", 0, (), True))
    tied = embeddings_tied_to_head(after)
    rows = []
    for arm, k, blocks, with_embeddings in arms:
        row: dict[str, Any] = {"arm": arm, "k": k, "blocks": _blocks_label(blocks), "embeddings": with_embeddings,
                               "n_tensors": 0, "old_acc": float("nan"), "old_first_token_acc": float("nan"),
                               "new_acc": float("nan"), "new_first_token_acc": float("nan"), "status": "ok"}
        if with_embeddings and tied:
            row["status"] = "skipped: embeddings tied to the LM head"
            rows.append(row)
            continue
        model = copy.deepcopy(after)
        report = graft(model, state, blocks, embeddings=with_embeddings) if (blocks or with_embeddings) else None
        row["n_tensors"] = len(report.names) if report else 0
        row["old_acc"], row["old_first_token_acc"] = score(model, old)
        if new:
            row["new_acc"], row["new_first_token_acc"] = score(model, new)
        logger.info("graft %s k=%d: old %.3f new %s", arm, k, row["old_acc"],
                    "–" if not new else f"{row['new_acc']:.3f}")
        rows.append(row)
        del model
    return pd.DataFrame(rows, columns=GRAFT_COLUMNS)
