"""A method comparison's report: ``methods.csv``, ``accuracy_matrix.csv``, ``candidates.csv``,
``task_vector_alpha.csv``, ``summary.json``, ``report.md`` and ``figures/``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import matplotlib.pyplot as plt
import pandas as pd

from ..comparison.summary import MEAN_COLUMNS, PAPER_TASK0, claim, method_means
from ..outputs import atomic_path, atomic_write_text
from ..plots.methods import alpha_curve_plot, tradeoff_plot
from .common import frame_markdown, write_csv, write_summary

if TYPE_CHECKING:
    from ..comparison.runner import ComparisonResult

__all__ = ["SCHEMA_VERSION", "METHODS_COLUMNS", "write_comparison_report"]

SCHEMA_VERSION = 1

METHODS_COLUMNS = ["method", "setting", "seed", "task0_after", "task0_dip", "task0_stop", "task0_end", "task1_stop",
                   "task1_end", "stop_step", "avg_acc", "bwt", "label", "task0_val_stop", "dip_step", "stop_reached",
                   "chosen_on_validation"]


def _pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text if std is None or (isinstance(std, float) and math.isnan(std)) else f"{text} ± {std * scale:.{digits}f}"


def _table(means: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, m in means.iterrows():
        paper = PAPER_TASK0.get(str(m["method"]))
        rows.append({
            "method": m["method"], "setting": m["setting"] or "–",
            **{name: _pm(m[f"{col}_mean"], m[f"{col}_std"]) for name, col in (
                ("T0 after", "task0_after"), ("T0 dip", "task0_dip"), ("T0 stop", "task0_stop"),
                ("T0 end", "task0_end"), ("T1 stop", "task1_stop"), ("T1 end", "task1_end"),
                ("avg acc", "avg_acc"))},
            "BWT": _pm(m["bwt_mean"], m["bwt_std"]),
            "stop step": _pm(m["stop_step_mean"], m["stop_step_std"], scale=1.0, digits=0),
            "paper T0": "–" if paper is None else (f"{paper:.2f}" if isinstance(paper, float) else paper)})
    return pd.DataFrame(rows)


def _save(fig: Any, path: Path) -> None:
    with atomic_path(os.fspath(path)) as tmp:
        fig.savefig(tmp, dpi=150, format="png", bbox_inches="tight")
    plt.close(fig)


def write_comparison_report(result: "ComparisonResult", out_dir: os.PathLike | str) -> dict[str, Any]:
    """Write the comparison's tables, figures, ``summary.json`` and ``report.md`` into ``out_dir``.

    Returns:
        What ``summary.json`` holds.
    """
    out = Path(out_dir)
    config = result.config
    methods = result.methods[[c for c in METHODS_COLUMNS if c in result.methods.columns]]
    write_csv(methods, out / "methods.csv")
    write_csv(result.accuracy, out / "accuracy_matrix.csv")
    write_csv(result.candidates, out / "candidates.csv")
    write_csv(result.task_vector_alpha, out / "task_vector_alpha.csv")
    means = method_means(methods)
    verdict = claim(means, config.tolerance)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    seq_selection = result.candidates[result.candidates["method"] == "SEQ"]["task1_stop"]
    selection_bound = float(seq_selection.iloc[0]) - config.tolerance if not seq_selection.empty else None
    _save(tradeoff_plot(result.candidates, x="task1_stop", y="task0_val_stop", bound=selection_bound),
          figures / "tradeoff_candidates.png")
    _save(tradeoff_plot(methods, bound=verdict.get("bound")), figures / "tradeoff.png")
    if not result.task_vector_alpha.empty:
        _save(alpha_curve_plot(result.task_vector_alpha), figures / "task_vector_alpha.png")
    summary = write_summary(out / "summary.json", "compare", {
        "config": config.to_dict(),
        "means": means.to_dict("records"),
        "claim": verdict,
        "choices": {family: {"setting": c.setting, "eligible": list(c.eligible), "reason": c.reason}
                    for family, c in result.choices.items()},
        "task0": result.task0,
        "unit_seconds": result.seconds,
    }, schema_version=SCHEMA_VERSION)
    atomic_write_text(os.fspath(out / "report.md"), _markdown(result, means, verdict))
    return summary


def _claim_line(verdict: dict[str, Any], tasks: int) -> str:
    if verdict.get("holds") is None:
        return "The paper's claim cannot be checked here (it needs SEQ and Freeze)."
    eligible = ", ".join(f"{m} ({v * 100:.1f})" for m, v in verdict["eligible"].items())
    excluded = ", ".join(f"{m} ({v * 100:.1f})" for m, v in verdict["excluded"].items()) or "none"
    answer = "holds" if verdict["holds"] else "does not hold"
    margin = verdict["margin"]
    margin_text = "" if isinstance(margin, float) and math.isnan(margin) else (
        f" Freeze's Task 0 at early stop minus the best other eligible method's: {margin * 100:+.1f} points.")
    return (f"**The paper's claim {answer} after {tasks} new task{'s' if tasks > 1 else ''}**: among the methods "
            f"whose newest task at early stop is at least {verdict['bound'] * 100:.1f}% (SEQ's mean minus "
            f"{verdict['tolerance'] * 100:.0f} points) — {eligible} — the most Task 0 at early stop is kept by "
            f"**{verdict['best']}**.{margin_text} Excluded: {excluded}.")


def _new_people(base_dir: Optional[str]) -> str:
    """How many people each new task asks about, from the base model's manifest ("?" without one)."""
    from ..biography.pretrain import read_base_manifest, shipped_base_dir
    from ..errors import SpuriousDiagError

    try:
        return str(read_base_manifest(base_dir or shipped_base_dir())["scenario"]["sizes"]["task1"])
    except (SpuriousDiagError, KeyError, TypeError):
        return "?"


def _markdown(result: "ComparisonResult", means: pd.DataFrame, verdict: dict[str, Any]) -> str:
    config = result.config
    seeds = ", ".join(map(str, config.seeds))
    lines = [
        "# Continual-learning methods on the Biography tasks", "",
        f"Task 0, then {config.tasks} new task{'s' if config.tasks > 1 else ''} ({_new_people(config.base_dir)} new "
        f"people each); seeds {seeds} "
        f"of the new tasks' data order. Every free setting was chosen on seed {config.selection_seed}'s runs, on the "
        f"Task 0 *validation* people: the most Task 0 validation exact match at the early-stop point among the "
        f"settings whose newest task there is within {config.tolerance * 100:.0f} points of SEQ's. Exact match in %, "
        "Task 0 on its held-out test people, mean ± s.d. over seeds.", "",
        "Points: *after* = the end of Task 0; *dip* = Task 0's lowest within Task 1's dip window; *stop* = the newest "
        "task's early-stop point (first evaluation where it reaches "
        f"{config.recipe.early_stop * 100:.0f}%; every earlier new task ended at its own); *end* = the newest task's "
        "last step. T1 = the newest task. *avg acc* and *BWT* come from the accuracy matrix at the early-stop points. "
        "The paper's Task 0 after its five-task sequence (Pythia-160M) is beside ours for reference.", "",
        _claim_line(verdict, config.tasks), "",
        frame_markdown(_table(means)), "",
        "![trade-off](figures/tradeoff.png)", "",
        "## How each setting was chosen", "",
    ]
    for family, choice in result.choices.items():
        lines.append(f"- **{family}**: {choice.setting} — {choice.reason}.")
    lines += ["", "Every setting tried on the selection seed (Task 0 *validation* people; the chosen ones starred):", "",
              "![candidates](figures/tradeoff_candidates.png)", ""]
    shown = result.candidates[result.candidates["method"] != "TaskVector"]
    if not shown.empty:
        view = shown[["method", "setting", "task0_val_stop", "task0_stop", "task1_stop", "eligible", "chosen"]]
        lines += [frame_markdown(view.assign(**{c: (view[c] * 100).round(1)
                                                for c in ("task0_val_stop", "task0_stop", "task1_stop")})), ""]
    if not result.task_vector_alpha.empty:
        lines += ["## Task Vector", "",
                  "θ = θ_k − α·(θ_e − θ_start): θ_start the Task 0 model, θ_e the SEQ run at the newest task's early-stop "
                  "point, θ_k its checkpoint at step k, named by its distance to e (`k=e-30`: 30 steps before it), which "
                  "carries to seeds whose early-stop points differ; (k, α) chosen like every other setting (the full "
                  "sweep is in `candidates.csv`). Old and new task against α at the chosen k:", "",
                  "![alpha](figures/task_vector_alpha.png)", ""]
    if result.task0:
        lines += ["## Task 0", ""]
        for variant, record in result.task0.items():
            lines.append(f"- {variant} ({record.get('method', '')}): held-out {record['task0_test'] * 100:.1f}%, "
                         f"validation {record['task0_val'] * 100:.1f}%.")
        lines.append("")
    mean_cols = ", ".join(MEAN_COLUMNS)
    lines += ["## Files", "",
              "`methods.csv` (one row per method × seed), `accuracy_matrix.csv` (long: after, task, exact match), "
              "`candidates.csv` (every setting tried on the selection seed), `task_vector_alpha.csv`, "
              f"`summary.json` (means of {mean_cols}; the claim; the choices). `work/` keeps every run's tables "
              "(and what `--resume` needs).", ""]
    return "\n".join(lines)
