"""The paper's analysis views of the demo's runs (DESIGN.md §2c), one job each.

Every job takes plain arguments (paths, numbers, settings) and returns DataFrames, so the demo
can run it in a worker process while other work goes on:

- :func:`forgetting_maps_job`: the forgetting map (layer × step, single and bottom arms) and the
  linear-probe map of SEQ's checkpoint chain;
- :func:`recovery_curve_job`: few-shot recovery from every checkpoint of that chain, with the
  never-aligned control (the shipped base);
- :func:`landscape_job`: one method's loss landscape on the plane through its own checkpoints at
  the early window's start a, its end b and the end of training, with its trajectory;
- :func:`weight_view`: the angles between the Task 0 update, Task 1's early window (a → b) and
  the rest of Task 1 (b → end), ours and the paper's quantity side by side, from one audit;
- :func:`feature_view_job`: the last query token's hidden states before/after each window;
- :func:`fisher_angle_job`: EWC's Task 0 Fisher against the update angle, per weight.

The early window is the analogue of the paper's steps 100 → 150 (:func:`early_window`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import pandas as pd

from ..errors import UsageError
from ..probes.options import RecoverySettings
from ..probes.forgetting_map import restoring_at
from .recipe import first_people
from .view_settings import ViewSettings

__all__ = ["early_window", "thin_dense_steps", "chain_steps", "forgetting_maps_job", "recovery_curve_job", "landscape_job",
           "weight_view", "feature_view_job", "fisher_angle_job", "summarize_views", "WEIGHT_VIEW_COLUMNS",
           "WINDOW_NAMES"]

logger = logging.getLogger(__name__)

# The audit chain of the weight view: base → Task 0 → a → b → end, so update 1 is Task 0's,
# update 3 the early window's and update 4 the rest of Task 1.
_TASK0_UPDATE, _EARLY_UPDATE, _REST_UPDATE = 1, 3, 4
WEIGHT_VIEW_COLUMNS = ["comparison", "name", "part", "layer", "module", "cosine", "angle_mean_deg",
                       "paper_angle_mean_deg", "rank_a", "rank_b", "paper_rank_a", "paper_rank_b", "status"]
WINDOW_NAMES = ("Task 0", "Task 1 early", "Task 1 rest")


def early_window(dip_step: int, steps: Sequence[int], ratio: float = 2 / 3) -> tuple[int, int]:
    """The early window (a, b) of a run: b is the dip's checkpoint (at least the first one after
    step 0), a the latest checkpoint at or before ``ratio``·b, as the paper's 100 → 150.

    >>> early_window(80, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90])
    (50, 80)
    >>> early_window(10, [0, 10, 20])
    (0, 10)
    """
    ordered = sorted(set(int(s) for s in steps))
    later = [s for s in ordered if s > 0]
    if not later:
        raise UsageError("the chain has no checkpoint after step 0")
    b = max([s for s in later if s <= dip_step] or [later[0]])
    a = max(s for s in ordered if s <= ratio * b or s == ordered[0])
    return (a, b) if a < b else (ordered[0], b)


def thin_dense_steps(steps: Sequence[tuple[int, str]], every: int) -> list[tuple[int, str]]:
    """Every ``every`` steps of a chain's evenly spaced start, and every checkpoint after it.

    >>> [s for s, _ in thin_dense_steps([(s, "") for s in (0, 10, 20, 30, 40, 60, 90)], 20)]
    [0, 20, 40, 60, 90]
    """
    ordered = sorted(steps)
    if len(ordered) < 3:
        return ordered
    spacing = ordered[1][0] - ordered[0][0]
    dense_end = ordered[0][0]
    for (previous, _), (step, _) in zip(ordered, ordered[1:]):
        if step - previous != spacing:
            break
        dense_end = step
    return [(s, p) for s, p in ordered if s > dense_end or s % every == 0]


def chain_steps(chain_dir: str) -> list[tuple[int, str]]:
    """``(step, path)`` of a chain's ``checkpoint-N`` folders."""
    from ..io.chain import list_chain

    return list_chain(chain_dir)


def _scenario_inputs() -> tuple[Any, Any, Any]:
    """(tokenizer, scenario data, probe inputs) of the shipped base model, as the demo uses them."""
    from .pretrain import load_base_model
    from .recipe import probe_inputs

    base = load_base_model()
    data = base.scenario()
    return base.tokenizer, data, probe_inputs(data)


def _model(path: str) -> Any:
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(path, local_files_only=True).eval()


def forgetting_maps_job(task0_dir: str, chain_dir: str, settings: ViewSettings, seed: int = 0
                        ) -> dict[str, pd.DataFrame]:
    """The forgetting map (single and bottom arms, every checkpoint) and the probe map of SEQ's chain.

    Returns:
        ``forgetting_map`` (:data:`~spurious_diag.probes.forgetting_map.FORGETTING_MAP_COLUMNS`)
        and ``probe_map`` (:data:`~spurious_diag.probes.forgetting_map.PROBE_MAP_COLUMNS`).
    """
    from ..io.loader import load_checkpoint
    from ..probes.forgetting_map import exact_match_scorer, forgetting_map, probe_map

    tokenizer, _, inputs = _scenario_inputs()
    steps = chain_steps(chain_dir)
    model = _model(task0_dir)
    score = exact_match_scorer(tokenizer, first_people(inputs.held_out, settings.map_people))
    acc_before = score(model)
    with load_checkpoint(task0_dir) as before:
        fmap = forgetting_map(model, before, steps, score, acc_before=acc_before, progress=False)
    probe_steps = thin_dense_steps(steps, settings.probe_every)
    pmap = probe_map(model, probe_steps, tokenizer, first_people(inputs.held_out, settings.probe_people), seed=seed,
                     progress=False)
    return {"forgetting_map": fmap, "probe_map": pmap}


def recovery_curve_job(task0_dir: str, chain_dir: str, base_dir: str, recovery: RecoverySettings,
                       settings: ViewSettings) -> pd.DataFrame:
    """Recovery from every checkpoint of SEQ's chain, with the shipped base as the control
    (:func:`~spurious_diag.probes.recovery_curve.recovery_by_step`); the people are the
    forgetting map's, and the reference accuracy is the Task 0 model's on them."""
    from ..probes.forgetting_map import exact_match_scorer
    from ..probes.recovery_curve import recovery_by_step

    tokenizer, _, inputs = _scenario_inputs()
    held_out = first_people(inputs.held_out, settings.map_people)
    model = _model(task0_dir)
    acc_before = exact_match_scorer(tokenizer, held_out)(model)
    control = _model(base_dir)
    return recovery_by_step(model, chain_steps(chain_dir), tokenizer, inputs.recovery_pool, held_out,
                            acc_before=acc_before, settings=recovery, control=control, progress=False)


def landscape_job(method: str, chain_dir: str, window: tuple[int, int], settings: ViewSettings
                  ) -> dict[str, pd.DataFrame]:
    """One method's loss landscape: the plane through its checkpoints at a, b and its last step,
    Task 0 (held-out people) and Task 1 loss on a grid covering its trajectory, and the trajectory.

    Returns:
        ``landscape`` (:data:`~spurious_diag.probes.landscape.LANDSCAPE_COLUMNS`) and
        ``landscape_trajectory`` (:data:`~spurious_diag.probes.landscape.TRAJECTORY_COLUMNS`).
    """
    from ..geometry.plane import project
    from ..io.loader import load_checkpoint
    from ..probes.landscape import landscape_grid, landscape_plane, loss_landscape, project_trajectory

    tokenizer, _, inputs = _scenario_inputs()
    steps = dict(chain_steps(chain_dir))
    a, b = window
    end = max(steps)
    if a not in steps or b not in steps:
        raise UsageError(f"{method}: the chain {chain_dir} has no checkpoint at step {a} or {b}")
    model = _model(steps[end])
    states = {s: dict(load_checkpoint(p)) for s, p in steps.items()}
    plane = landscape_plane(states[a], states[b], states[end])
    records = {"task0": inputs.held_out[: settings.landscape_records],
               "task1": inputs.new_task[: settings.landscape_records]}
    coords = [(point.x, point.y) for point in (project(plane, state) for state in states.values())]
    xs, ys = landscape_grid(coords, size=settings.landscape_size)
    grid = loss_landscape(model, tokenizer, plane, records, xs, ys, method=method, progress=False)
    trajectory = project_trajectory(model, tokenizer, plane, sorted(states.items()), records, method=method,
                                    progress=False)
    return {"landscape": grid, "landscape_trajectory": trajectory}


def weight_view(base_dir: str, task0_dir: str, chain_dir: str, window: tuple[int, int]) -> dict[str, pd.DataFrame]:
    """The weight view with the paper's windows, from one audit of base → Task 0 → a → b → end
    with the paper's quantity (``paper_angles``) beside ours.

    Returns:
        ``weight_view``: :data:`WEIGHT_VIEW_COLUMNS`, one row per comparison × weight, the
        comparisons ``Task 0 vs early`` (Task 0's update against Task 1's a → b) and
        ``early vs rest`` (a → b against b → end); ``weight_view_pairs``: the audit's pairs.
    """
    from ..updates.engine import audit
    from ..updates.options import AuditOptions

    steps = dict(chain_steps(chain_dir))
    a, b = window
    chain = [base_dir, task0_dir, steps[a], steps[b], steps[max(steps)]]
    result = audit(chain, AuditOptions(rank=8, paper_angles=True), progress=False)
    pairs = result.pairs
    frames = []
    for label, (ua, ub) in (("Task 0 vs early", (_TASK0_UPDATE, _EARLY_UPDATE)),
                            ("early vs rest", (_EARLY_UPDATE, _REST_UPDATE))):
        rows = pairs[(pairs["update_a"] == ua) & (pairs["update_b"] == ub)].copy()
        rows.insert(0, "comparison", label)
        frames.append(rows.reindex(columns=WEIGHT_VIEW_COLUMNS))
    return {"weight_view": pd.concat(frames, ignore_index=True), "weight_view_pairs": pairs}


def feature_view_job(base_dir: str, task0_dir: str, chain_dir: str, window: tuple[int, int],
                     settings: ViewSettings) -> dict[str, pd.DataFrame]:
    """The feature view of the windows Task 0 (base → Task 0), Task 1 early (a → b) and Task 1
    rest (b → end), on held-out people: ``feature_view`` (summary) and ``feature_points``."""
    from ..probes.feature_view import feature_view

    tokenizer, _, inputs = _scenario_inputs()
    steps = dict(chain_steps(chain_dir))
    a, b = window
    records = first_people(inputs.held_out, settings.feature_people)
    pairs = {"Task 0": (base_dir, task0_dir), "Task 1 early": (steps[a], steps[b]),
             "Task 1 rest": (steps[b], steps[max(steps)])}
    summaries, points = [], []
    for name in WINDOW_NAMES:
        before, after = (_model(p) for p in pairs[name])
        view = feature_view(before, after, tokenizer, records, window=name)
        summaries.append(view.summary)
        points.append(view.points)
    return {"feature_view": pd.concat(summaries, ignore_index=True),
            "feature_points": pd.concat(points, ignore_index=True)}


def fisher_angle_job(task0_dir: str, pairs: pd.DataFrame, settings: ViewSettings, batch_size: int = 32
                     ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """EWC's Task 0 Fisher (as the EWC method computes it) against the angle between Task 0's
    update and Task 1's early window, per weight, with the Pearson correlation (the paper's §5.1).

    Args:
        pairs: the weight view's audit pairs (:func:`weight_view`).

    Returns:
        (``fisher_angle`` table, {r, p, n, reason}).
    """
    from ..continual.ewc import batch_fisher
    from ..probes.fisher_angle import fisher_angle_correlation, fisher_angle_table, fisher_by_tensor

    tokenizer, data, _ = _scenario_inputs()
    model = _model(task0_dir)
    fisher = batch_fisher(model, tokenizer, data.qa("task0_train"), batch_size=batch_size, source="task0",
                          max_examples=settings.fisher_examples)
    table = fisher_angle_table(fisher_by_tensor(fisher.fisher, model.config.num_hidden_layers), pairs,
                               update_a=_TASK0_UPDATE, update_b=_EARLY_UPDATE)
    correlation = fisher_angle_correlation(table)
    logger.info("Fisher against the Task 0 / early-window angle: r = %s, p = %s over %s weights",
                _fmt(correlation.get("r")), _fmt(correlation.get("p")), correlation.get("n"))
    return table, correlation


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) and math.isfinite(x) else str(x)



def _nearest_step(steps: Sequence[int], target: int) -> int:
    return min(steps, key=lambda s: (abs(s - target), s))


def summarize_views(tables: dict[str, pd.DataFrame], *, dip_step: int, window: tuple[int, int],
                    correlation: dict[str, Any]) -> dict[str, Any]:
    """The views' headline numbers for ``summary.json`` (each read from the tables it names).

    - ``forgetting_map``: at the dip, the layer whose revert alone restores most of Task 0, and
      the shallowest bottom depth restoring at least half;
    - ``recovery_by_step``: the recovery fraction (and the control's) at steps 50, 100, 150 (the
      nearest checkpoints, for those within the run) and at the last step;
    - ``probe_map``: the best layer's mean probe accuracy before Task 1 and at the dip;
    - ``fisher_angle``: r, p and n.
    """
    out: dict[str, Any] = {"early_window": {"a": window[0], "b": window[1], "paper": [100, 150]},
                           "fisher_angle": {k: correlation.get(k) for k in ("r", "p", "n", "reason")}}
    fmap = tables.get("forgetting_map")
    if fmap is not None and not fmap.empty:
        at = _nearest_step(sorted(fmap["step"].unique()), dip_step)
        row = fmap[fmap["step"] == at].iloc[0]
        out["forgetting_map"] = {"step": int(at), "num_layers": int(fmap["layer"].max()),
                                 "acc_step": float(row["acc_step"]), "acc_before": float(row["acc_before"]),
                                 **restoring_at(fmap, at)}
    recovery = tables.get("recovery_by_step")
    if recovery is not None and not recovery.empty:
        steps = sorted(recovery["step"].unique())
        picks = {str(t): _nearest_step(steps, t) for t in (50, 100, 150) if t <= steps[-1]}
        picks["end"] = int(steps[-1])
        rows = recovery.set_index("step")
        out["recovery_by_step"] = {
            "n": int(recovery["n"].iloc[0]),
            "at": {name: {"step": int(s), "fraction": float(rows.loc[s, "fraction"]),
                          "control_fraction": float(rows.loc[s, "control_fraction"]),
                          "acc_step": float(rows.loc[s, "acc_step"]), "acc": float(rows.loc[s, "acc"])}
                   for name, s in picks.items()}}
    pmap = tables.get("probe_map")
    if pmap is not None and not pmap.empty:
        means = pmap.groupby(["step", "layer"])["acc"].mean()
        at = _nearest_step(sorted(pmap["step"].unique()), dip_step)
        first = int(min(pmap["step"]))
        out["probe_map"] = {"first_step": first, "dip_step": int(at),
                            "best_layer_acc_first": float(means.loc[first].max()),
                            "best_layer_acc_dip": float(means.loc[at].max()),
                            "best_layer_dip": int(means.loc[at].idxmax())}
    return out
