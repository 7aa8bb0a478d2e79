"""Linear probes: decode an attribute's value from the residual stream, per layer.

For each checkpoint, the hidden state at the last prompt token (:mod:`.hidden`; layer 0 = the
embeddings, layer l = output of block l − 1) of every record is the feature vector and the
completion (the attribute's value) the class. Per attribute and layer, a multinomial logistic
regression (scikit-learn, features standardized on the training part) is fit on one set of
individuals and tested on disjoint individuals (person-disjoint split, :func:`.records.split_by_person`;
a seeded record split when records have no ``person_id``). A test value never seen in
training cannot be predicted and counts as wrong.

Reported per (checkpoint, attribute, layer): ``acc`` (test accuracy), ``acc_shuffled`` (the same
fit on training labels permuted with the seed: the control, ≈ chance when the probe does
not memorize), ``chance_majority`` (the test share of the most frequent training value) and
``chance_uniform`` (1 / #training classes).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..errors import InvalidDataError, MismatchError
from .hidden import last_prompt_hidden_states
from .records import as_probe_records, has_person_ids, split_by_person

__all__ = ["PROBE_COLUMNS", "probe_accuracy", "probe_layers", "linear_probe"]

logger = logging.getLogger(__name__)

PROBE_COLUMNS = ["model", "attribute", "layer", "n_train", "n_test", "n_classes", "acc", "acc_shuffled",
                 "chance_majority", "chance_uniform"]

ModelsArg = Union[PreTrainedModel, Mapping[str, PreTrainedModel]]


def probe_accuracy(x_train: np.ndarray, y_train: Sequence[Any], x_test: np.ndarray, y_test: Sequence[Any], *,
                   c: float = 1.0, max_iter: int = 200) -> float:
    """Test accuracy of a standardized logistic-regression probe.

    Args:
        x_train: N_train×D features; y_train: N_train labels (any hashable values).
        x_test: N_test×D features; y_test: N_test labels.
        c: inverse L2 regularization strength (scikit-learn's ``C``).
        max_iter: lbfgs iterations (convergence warnings are silenced: a probe that has not
            converged is still a valid lower bound).

    Returns:
        Fraction of test labels predicted exactly; a single training class predicts itself.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train, y_test = np.asarray(y_train, dtype=object), np.asarray(y_test, dtype=object)
    if len(y_test) == 0:
        return float("nan")
    classes = set(y_train.tolist())
    if len(classes) == 1:
        return float(np.mean(y_test == y_train[0]))
    from threadpoolctl import threadpool_limits

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    # Multi-threaded BLAS makes these small fits ~15× slower on a busy machine.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        clf.fit(x_train, y_train.astype(str))
        predicted = clf.predict(x_test)
    return float(np.mean(predicted == y_test.astype(str)))


def probe_layers(hidden: torch.Tensor, labels: Sequence[Any], train_idx: Sequence[int], test_idx: Sequence[int], *,
                 seed: int = 0, c: float = 1.0, max_iter: int = 200, shuffled_control: bool = True) -> pd.DataFrame:
    """Probe every layer of one attribute.

    Args:
        hidden: (L + 1)×N×D hidden states; labels: N values.
        train_idx, test_idx: disjoint row indices.
        seed: permutation of the training labels for the shuffled-label control.
        shuffled_control: fit the shuffled-label control (else ``acc_shuffled`` is NaN; half the cost).

    Returns:
        One row per layer: ``layer``, ``n_train``, ``n_test``, ``n_classes``, ``acc``,
        ``acc_shuffled``, ``chance_majority``, ``chance_uniform``.
    """
    if hidden.ndim != 3 or hidden.shape[1] != len(labels):
        raise MismatchError(f"hidden must be (L+1)×N×D with N = {len(labels)} labels, got {tuple(hidden.shape)}")
    y = np.asarray([str(v) for v in labels], dtype=object)
    train_idx, test_idx = np.asarray(train_idx, dtype=int), np.asarray(test_idx, dtype=int)
    y_train, y_test = y[train_idx], y[test_idx]
    shuffled = np.random.default_rng(seed).permutation(y_train)
    values, counts = np.unique(y_train, return_counts=True)
    majority = values[np.argmax(counts)]
    chance_majority = float(np.mean(y_test == majority)) if len(y_test) else float("nan")
    rows = []
    for layer in range(hidden.shape[0]):
        x = hidden[layer].double().numpy()
        rows.append({
            "layer": layer, "n_train": len(train_idx), "n_test": len(test_idx), "n_classes": len(values),
            "acc": probe_accuracy(x[train_idx], y_train, x[test_idx], y_test, c=c, max_iter=max_iter),
            "acc_shuffled": (probe_accuracy(x[train_idx], shuffled, x[test_idx], y_test, c=c, max_iter=max_iter)
                             if shuffled_control else float("nan")),
            "chance_majority": chance_majority, "chance_uniform": 1.0 / len(values),
        })
    return pd.DataFrame(rows)


def linear_probe(
    models: ModelsArg,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Any],
    *,
    test_fraction: float = 0.3,
    seed: int = 0,
    c: float = 1.0,
    max_iter: int = 200,
    min_train_per_class: int = 1,
    batch_size: int = 256,
    shuffled_control: bool = True,
) -> pd.DataFrame:
    """Per-layer linear-probe accuracy of each checkpoint, per attribute, person-disjoint.

    Args:
        models: a causal LM, or ``{"before": m0, "after": m1, ...}`` (same tokenizer).
        records: prompt/completion records of held-out individuals (``attribute`` names the
            label set; ``person_id`` makes the split person-disjoint).
        test_fraction: share of individuals (or records, without ids) in the probe's test part.
        seed: the split and the shuffled-label permutation (the same for every checkpoint).
        c, max_iter: the logistic regression's ``C`` and iteration budget.
        min_train_per_class: skip attributes whose training part has fewer examples per
            class than this on average (a value per person, e.g. birth dates, is not learnable).
        batch_size: prompts per forward pass.
        shuffled_control: also fit the shuffled-label control (``acc_shuffled``; NaN without).

    Returns:
        Tidy frame with :data:`PROBE_COLUMNS`, one row per (model, attribute, layer).
    """
    recs = as_probe_records(records)
    if not recs:
        raise InvalidDataError("linear probe: no records")
    if not has_person_ids(recs):
        logger.warning("linear probe: records carry no person_id; the split is by record, not by individual")
    train, _ = split_by_person(recs, test_fraction=test_fraction, seed=seed)
    train_ids = {id(r) for r in train}
    by_attribute: dict[str, list[int]] = {}
    for i, r in enumerate(recs):
        by_attribute.setdefault(r.attribute, []).append(i)
    named = dict(models) if isinstance(models, Mapping) else {"model": models}
    frames = []
    for name, model in named.items():
        hidden = last_prompt_hidden_states(model, tokenizer, [r.prompt for r in recs], batch_size=batch_size)
        for attribute, idx in by_attribute.items():
            tr = [j for j, i in enumerate(idx) if id(recs[i]) in train_ids]
            te = [j for j, i in enumerate(idx) if id(recs[i]) not in train_ids]
            labels = [recs[i].completion for i in idx]
            n_classes = len({labels[j] for j in tr})
            if not tr or not te or len(tr) < min_train_per_class * n_classes:
                logger.info("linear probe: skipping %s (%d train, %d test, %d classes)", attribute, len(tr), len(te),
                            n_classes)
                continue
            frame = probe_layers(hidden[:, idx], labels, tr, te, seed=seed, c=c, max_iter=max_iter,
                                 shuffled_control=shuffled_control)
            frame.insert(0, "attribute", attribute)
            frame.insert(0, "model", name)
            frames.append(frame)
        logger.info("linear probe of %s: %d records, %d layers", name, len(recs), hidden.shape[0])
    if not frames:
        return pd.DataFrame(columns=PROBE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[PROBE_COLUMNS]
