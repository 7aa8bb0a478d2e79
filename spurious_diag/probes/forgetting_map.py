"""Layer-wise forgetting maps: *where* (which layer) and *when* (which step) the old task was lost.

For each checkpoint t of a run on the new task and each layer l (−1 embeddings, 0..L−1 blocks,
L final norm + LM head), the old task is scored with layer l alone put back to its value before
the new task (the ``single`` arm), and with the bottom layers −1..l put back together (the
``bottom`` arm, so its deepest row, l = L, reverts everything):

    restored = (acc_revert − acc_t) / (acc_before − acc_t)

1 means that reverting those layers alone brings the old task all the way back at step t; 0 that
it brings nothing back. Where the model has barely forgotten (acc_before − acc_t < ``min_gap``)
the fraction is NaN: there is nothing to restore and the ratio would be noise. A companion map,
:func:`probe_map`, asks whether the knowledge is still *decodable* per layer at each step (the
linear probes of :mod:`.linear_probe`), and :mod:`.recovery_curve` whether it is still
*recoverable*.

Memory: one working model, into which each checkpoint is spliced in turn (lazily, one tensor at a
time, from :func:`~spurious_diag.io.load_checkpoint`), and the ``before`` state: never more than
two models. With tied embeddings (SmolLM2, Gemma) the embedding matrix *is* the LM head, so
reverting layer −1 also reverts the head's matrix (and layer L reverts it with the final norm).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Optional, Sequence

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import UsageError
from ..training.evaluate import EVAL_BATCH_SIZE, evaluate_records
from .grafting import SourceArg, embeddings_tied_to_head, model_num_layers, splice_tensors
from .linear_probe import linear_probe
from .recovery import recovery_fraction
from .run_steps import StepSource, each_step, load_step

__all__ = ["FORGETTING_MAP_COLUMNS", "PROBE_MAP_COLUMNS", "ARMS", "DEFAULT_MIN_GAP", "layer_units", "revert_layers",
           "exact_match_scorer", "forgetting_map_at", "forgetting_map", "restoring_at", "probe_map"]

logger = logging.getLogger(__name__)

FORGETTING_MAP_COLUMNS = ["step", "arm", "layer", "acc", "restored", "acc_step", "acc_before", "n_tensors"]
PROBE_MAP_COLUMNS = ["step", "attribute", "layer", "acc", "acc_shuffled", "chance_majority"]
ARMS = ("single", "bottom")

# Below 5 points of forgetting the restored fraction divides noise by noise (a held-out set of
# ~1000 records has a standard error near 1.5 points).
DEFAULT_MIN_GAP = 0.05

Scorer = Callable[[PreTrainedModel], float]


def layer_units(num_layers: int) -> list[int]:
    """The map's rows: −1 (embeddings), 0..L−1 (blocks), L (final norm + LM head).

    >>> layer_units(2)
    [-1, 0, 1, 2]
    """
    if num_layers < 1:
        raise UsageError(f"num_layers must be >= 1, got {num_layers}")
    return [-1, *range(num_layers), num_layers]


def revert_layers(model: torch.nn.Module, before: SourceArg, layers: Iterable[int]) -> list[str]:
    """Put the tensors of ``layers`` (−1 embeddings, 0..L−1 blocks, L final norm + head) back to
    their values in ``before``, in place; returns the names copied (empty for no layers).

    Raises:
        UsageError: a layer outside −1..L.
        MismatchError: a tensor missing from ``before`` or of another shape.
    """
    num_layers = model_num_layers(model)
    chosen = {int(layer) for layer in layers}
    bad = sorted(chosen - set(layer_units(num_layers)))
    if bad:
        raise UsageError(f"layers {bad} outside -1..{num_layers}")
    if not chosen:
        return []
    names, _ = splice_tensors(model, before, lambda info: info.layer is not None and info.layer in chosen)
    return names


def exact_match_scorer(tokenizer: PreTrainedTokenizerBase, records: Sequence[Any], *, batch_size: int = EVAL_BATCH_SIZE) -> Scorer:
    """``model -> exact match`` on ``records`` (QA format, scored with ``<eos>``; mean over attributes)."""
    from .records import as_probe_records

    json_records = [r.as_json() for r in as_probe_records(records)]

    def score(model: PreTrainedModel) -> float:
        return evaluate_records(model, tokenizer, json_records, batch_size=batch_size).exact_match

    return score


def forgetting_map_at(
    model: PreTrainedModel,
    before: SourceArg,
    current: SourceArg,
    score: Scorer,
    *,
    step: int,
    acc_before: float,
    arms: Sequence[str] = ARMS,
    min_gap: float = DEFAULT_MIN_GAP,
    layers: Optional[Sequence[int]] = None,
) -> pd.DataFrame:
    """The forgetting map's rows of one checkpoint.

    Args:
        model: holds the checkpoint's weights (modified during the call; holds them again after).
        before: the weights before the new task (the revert source).
        current: the checkpoint's own weights (what each reverted layer is put back to).
        score: ``model -> old-task accuracy``.
        step: the checkpoint's step (the ``step`` column).
        acc_before: the old-task accuracy of ``before`` (the fraction's reference).
        arms: ``single`` and/or ``bottom``.
        min_gap: the restored fraction is NaN where acc_before − acc_step < min_gap.
        layers: the rows to score (default every layer of :func:`layer_units`); thin them out for
            deep models, each costs a scoring per arm. A ``bottom`` row still reverts every layer
            from the embeddings up to its own.

    Returns:
        :data:`FORGETTING_MAP_COLUMNS`, one row per arm × layer.

    Raises:
        UsageError: an unknown arm, or a layer outside −1..L.
    """
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise UsageError(f"unknown arms {unknown}; choose from {list(ARMS)}")
    units = layer_units(model_num_layers(model))
    chosen = _chosen_layers(units, layers)
    acc_step = score(model)
    rows: list[dict[str, Any]] = []

    def row(arm: str, layer: int, acc: float, n_tensors: int) -> dict[str, Any]:
        return {"step": step, "arm": arm, "layer": layer, "acc": acc,
                "restored": recovery_fraction(acc, acc_step, acc_before, min_gap=min_gap),
                "acc_step": acc_step, "acc_before": acc_before, "n_tensors": n_tensors}

    if "single" in arms:
        for layer in chosen:
            names = revert_layers(model, before, [layer])
            rows.append(row("single", layer, score(model), len(names)))
            revert_layers(model, current, [layer])
    if "bottom" in arms:
        reverted = 0
        for layer in units[: units.index(chosen[-1]) + 1]:
            reverted += len(revert_layers(model, before, [layer]))  # the bottom layers −1..layer, cumulatively
            if layer in chosen:
                rows.append(row("bottom", layer, score(model), reverted))
        revert_layers(model, current, units)
    return pd.DataFrame(rows, columns=FORGETTING_MAP_COLUMNS)


def _chosen_layers(units: Sequence[int], layers: Optional[Sequence[int]]) -> list[int]:
    if layers is None:
        return list(units)
    chosen = sorted({int(layer) for layer in layers})
    bad = [layer for layer in chosen if layer not in units]
    if bad or not chosen:
        raise UsageError(f"map layers {bad or 'none'} outside {units[0]}..{units[-1]}")
    return chosen


def forgetting_map(
    model: PreTrainedModel,
    before: SourceArg,
    steps: Sequence[tuple[int, StepSource]],
    score: Scorer,
    *,
    acc_before: Optional[float] = None,
    arms: Sequence[str] = ARMS,
    min_gap: float = DEFAULT_MIN_GAP,
    layers: Optional[Sequence[int]] = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The forgetting map (layer × step) of a run on the new task.

    Args:
        model: the working model (any checkpoint of the run, or the architecture with any weights):
            each checkpoint is loaded into it in turn, so it ends holding the last one.
        before: the weights before the new task (model, state dict or Checkpoint).
        steps: ``(step, checkpoint)`` pairs; a checkpoint is a path (loaded lazily), a state
            dict, a Checkpoint or a model.
        score: ``model -> old-task accuracy`` (e.g. :func:`exact_match_scorer`).
        acc_before: the old-task accuracy of ``before``; None scores it (loading ``before``
            into ``model`` once).
        arms, min_gap, layers: as in :func:`forgetting_map_at`.

    Returns:
        :data:`FORGETTING_MAP_COLUMNS`, one row per step × arm × layer, in step order.
    """
    if acc_before is None:
        load_step(model, before)
        acc_before = score(model)
    tied = embeddings_tied_to_head(model)
    if tied:
        logger.info("forgetting map: the embeddings are tied to the LM head, so reverting layer -1 reverts the "
                    "head's matrix too")
    frames = [forgetting_map_at(model, before, current, score, step=step, acc_before=acc_before, arms=arms,
                                min_gap=min_gap, layers=layers)
              for step, current in each_step(model, steps, desc="forgetting map", progress=progress)]
    return pd.concat(frames, ignore_index=True)


def restoring_at(frame: pd.DataFrame, step: int) -> dict[str, Any]:
    """What restores the old task at one step of a forgetting map: ``most_restoring_layer`` and
    ``most_restored`` (the ``single`` row restoring most) and ``half_restored_by_bottom_through``
    (the shallowest ``bottom`` row restoring at least half, or None); empty when no row of the
    step has a restored fraction (nothing was lost there)."""
    at = frame[frame["step"] == step]
    single = at[(at["arm"] == "single") & at["restored"].notna()]
    if single.empty:
        return {}
    best = single.loc[single["restored"].idxmax()]
    half = at[(at["arm"] == "bottom") & (at["restored"] >= 0.5)]
    return {"most_restoring_layer": int(best["layer"]), "most_restored": float(best["restored"]),
            "half_restored_by_bottom_through": int(half["layer"].min()) if not half.empty else None}


def probe_map(
    model: PreTrainedModel,
    steps: Sequence[tuple[int, StepSource]],
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Any],
    *,
    seed: int = 0,
    test_fraction: float = 0.3,
    batch_size: int = EVAL_BATCH_SIZE,
    shuffled_control: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """The linear probe's accuracy per layer × step: is the knowledge still decodable where the
    output is lost?

    Args:
        model: the working model (each checkpoint is loaded into it in turn).
        steps: ``(step, checkpoint)`` pairs, as in :func:`forgetting_map`.
        records: held-out old-task records (``attribute`` names the label; ``person_id`` makes the
            probe's own train/test split person-disjoint; the same split at every step).
        seed, test_fraction, batch_size: as in :func:`~.linear_probe.linear_probe`.
        shuffled_control: also fit the shuffled-label control at every step (twice the cost; the
            map reports ``chance_majority`` either way).

    Returns:
        :data:`PROBE_MAP_COLUMNS`, one row per step × attribute × layer. ``layer`` follows the
        forgetting map: −1 is the embedding output, l the output of block l (the last one after
        the final norm), so row l of both maps describes the same depth.
    """
    frames = []
    for step, _ in each_step(model, steps, desc="probe map", progress=progress):
        frame = linear_probe(model, tokenizer, records, seed=seed, test_fraction=test_fraction, batch_size=batch_size,
                             shuffled_control=shuffled_control)
        frame = frame.assign(step=step, layer=frame["layer"] - 1)
        frames.append(frame[PROBE_MAP_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PROBE_MAP_COLUMNS)
