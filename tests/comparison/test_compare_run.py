"""A whole comparison on a tiny base model: every family, the choices, Task Vector, the report, resume."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from spurious_diag.comparison.config import CompareConfig
from spurious_diag.comparison.runner import run_comparison
from spurious_diag.comparison.selection import choose_setting
from spurious_diag.comparison.store import ComparisonStore
from spurious_diag.errors import OutputDirError, UsageError

METHODS = "SEQ,Freeze(0|1),REPLAY(0.1),EWC(1e3|1e6),TaskVector(0.5|1),LAMOL(0.25),GP(2-5)"
ISSUE_COLUMNS = ["method", "setting", "seed", "task0_after", "task0_dip", "task0_stop", "task0_end", "task1_stop",
                 "task1_end", "stop_step", "avg_acc", "bwt"]


@pytest.fixture(scope="module")
def finished(tiny_base_dir, tmp_path_factory):
    from spurious_diag.biography.recipe import BiographyRecipe

    recipe = BiographyRecipe(task0_steps=10, task1_steps=20, batch_size=8, early_stop=0.3, dip_window=10,
                             dense_every=5, sparse_every=10, stop_check_every=5, checkpoint_every=5)
    config = CompareConfig(methods=METHODS, tasks=1, seeds=(0, 1), recipe=recipe, base_dir=str(tiny_base_dir))
    out = tmp_path_factory.mktemp("comparison") / "out"
    return config, out, run_comparison(config, out, jobs=1, progress=False)


def test_one_row_per_family_and_seed_with_the_issue_columns(finished):
    config, _, result = finished
    methods = result.methods
    assert set(ISSUE_COLUMNS) <= set(methods.columns)
    assert sorted(methods["method"].unique()) == sorted(["SEQ", "Freeze", "REPLAY", "EWC", "TaskVector", "LAMOL", "GP"])
    assert all(sorted(seeds) == [0, 1] for seeds in methods.groupby("method")["seed"].apply(list))
    values = methods[["task0_after", "task0_stop", "task0_end", "task1_stop", "task1_end", "avg_acc"]]
    assert values.ge(0).all().all() and values.le(1).all().all()


def test_every_run_starts_from_the_same_task0_model_except_lamol(finished):
    _, _, result = finished
    after = result.methods.set_index(["method", "seed"])["task0_after"]
    plain = result.task0["plain"]["task0_test"]
    for (method, _), value in after.items():
        if method != "LAMOL":
            assert value == pytest.approx(plain)
    assert set(result.task0) == {"plain", "lamol-0p25"}


def test_choices_follow_the_rule_on_the_selection_seed(finished):
    config, _, result = finished
    candidates = result.candidates
    seq = candidates[(candidates["method"] == "SEQ")]["task1_stop"].iloc[0]
    for family in ("Freeze", "EWC", "TaskVector"):
        rows = candidates[candidates["method"] == family]
        expected = choose_setting(rows, seq, config.tolerance).setting
        assert result.choices[family].setting == expected
        assert rows.loc[rows["chosen"], "setting"].tolist() == [expected]
    for family in ("Freeze", "EWC"):
        assert set(result.methods.loc[result.methods["method"] == family, "setting"]) == {result.choices[family].setting}
    assert (candidates["seed"] == config.selection_seed).all()


def test_task_vector_edits_seq_runs(finished):
    _, _, result = finished
    methods = result.methods.set_index(["method", "seed"])
    for seed in (0, 1):
        assert methods.loc[("TaskVector", seed), "stop_step"] == methods.loc[("SEQ", seed), "stop_step"]
        assert pd.isna(methods.loc[("TaskVector", seed), "task0_dip"])
    curve = result.task_vector_alpha
    assert sorted(curve["alpha"].unique()) == [0.5, 1.0] and sorted(curve["seed"].unique()) == [0, 1]


def test_accuracy_matrix_rows_per_run(finished):
    _, _, result = finished
    matrix = result.accuracy
    assert list(matrix.columns) == ["method", "setting", "seed", "after", "task", "exact_match"]
    assert len(matrix) == 7 * 2 * 4  # 7 families × 2 seeds × (after task0, task1) × (task0, task1)


def test_freeze_runs_kept_their_frozen_weights_bit_identical(finished):
    _, out, result = finished
    k = result.choices["Freeze"].setting
    for seed in (0, 1):
        assert ComparisonStore.done(out / "work" / "runs" / f"freeze-{k}-s{seed}")["frozen_bit_identical"] is True


def test_the_report_holds_the_tables_figures_and_claim(finished, tmp_path):
    from spurious_diag.report.compare import write_comparison_report

    _, _, result = finished
    summary = write_comparison_report(result, tmp_path)
    for name in ("methods.csv", "accuracy_matrix.csv", "candidates.csv", "task_vector_alpha.csv", "summary.json",
                 "report.md", "figures/tradeoff.png", "figures/tradeoff_candidates.png",
                 "figures/task_vector_alpha.png"):
        assert (tmp_path / name).is_file(), name
    assert list(pd.read_csv(tmp_path / "methods.csv").columns[:12]) == ISSUE_COLUMNS
    assert summary["kind"] == "compare" and summary["claim"]["holds"] in (True, False)
    report = (tmp_path / "report.md").read_text()
    assert "The paper's claim" in report
    from spurious_diag.biography.pretrain import read_base_manifest

    people = read_base_manifest(result.config.base_dir)["scenario"]["sizes"]["task1"]
    assert f"({people} new people each)" in report  # the base's scenario, not the shipped one's 200


def test_resume_reruns_only_the_unfinished_units_and_gives_the_same_tables(finished, tmp_path):
    config, out, result = finished
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    k = result.choices["Freeze"].setting
    (copy / "work" / "runs" / f"freeze-{k}-s1" / "done.json").unlink()  # as if killed in that run
    shutil.rmtree(copy / "work" / "taskvector" / "s1")
    again = run_comparison(config, copy, jobs=1, resume=True, progress=False)
    assert set(again.seconds) == {f"run/freeze-{k}/s1", "taskvector/s1"}
    pd.testing.assert_frame_equal(again.methods, result.methods)
    pd.testing.assert_frame_equal(again.candidates, result.candidates)


def test_resume_refuses_other_settings_and_a_fresh_start_refuses_a_full_directory(finished, tmp_path):
    config, out, _ = finished
    import dataclasses

    with pytest.raises(UsageError, match="other settings"):
        run_comparison(dataclasses.replace(config, tolerance=0.2), out, jobs=1, resume=True, progress=False)
    with pytest.raises(OutputDirError, match="not empty"):
        run_comparison(config, out, jobs=1, progress=False)
    with pytest.raises(OutputDirError, match="nothing to resume"):
        run_comparison(config, tmp_path / "empty", jobs=1, resume=True, progress=False)


def test_a_longer_sequence_ends_each_earlier_task_at_its_early_stop(tiny_base_dir, short_recipe, tmp_path):
    config = CompareConfig(methods="SEQ,Freeze(1)", tasks=2, seeds=(0,), recipe=short_recipe,
                           base_dir=str(tiny_base_dir))
    result = run_comparison(config, tmp_path / "out", jobs=1, progress=False)
    points = pd.read_csv(tmp_path / "out" / "work" / "runs" / "seq-s0" / "points.csv").set_index(["task", "point"])
    stop, end = points.loc[("task1", "early_stop")], points.loc[("task1", "end")]
    if stop["reached"]:  # the outcome first: the tiny model may not reach the target in 20 steps
        assert end["step"] == stop["step"]
    else:
        assert end["step"] == short_recipe.task1_steps
    matrix = result.accuracy[(result.accuracy["method"] == "SEQ")]
    assert sorted(matrix["after"].unique()) == ["task0", "task1", "task2"]
    assert sorted(result.methods["method"]) == ["Freeze", "SEQ"]


def test_without_train_past_stop_the_last_task_ends_at_its_early_stop_and_seq_keeps_its_checkpoints(
        tiny_base_dir, short_recipe, tmp_path):
    import dataclasses

    recipe = dataclasses.replace(short_recipe, train_past_stop=False)
    config = CompareConfig(methods="SEQ", tasks=1, seeds=(0, 1), recipe=recipe, base_dir=str(tiny_base_dir),
                           seq_checkpoints=True)
    run_comparison(config, tmp_path / "out", jobs=1, progress=False)
    runs = tmp_path / "out" / "work" / "runs"
    for seed in (0, 1):
        points = pd.read_csv(runs / f"seq-s{seed}" / "points.csv").set_index(["task", "point"])
        stop, end = points.loc[("task1", "early_stop")], points.loc[("task1", "end")]
        # The outcome first: the tiny model may not reach the target in 20 steps.
        assert end["step"] == (stop["step"] if stop["reached"] else recipe.task1_steps)
    # Only the selection seed's SEQ run keeps its checkpoints, up to where it ended.
    saved = sorted(int(p.name.split("-")[1]) for p in (runs / "seq-s0" / "checkpoints" / "task1").glob("checkpoint-*"))
    assert saved and saved[-1] == int(pd.read_csv(runs / "seq-s0" / "points.csv").query("point == 'end'")["step"].iloc[0])
    assert not (runs / "seq-s1" / "checkpoints").exists()


def _step0(run_dir):
    curve = pd.read_csv(run_dir / "curve.csv")
    rows = curve[(curve["task_index"] == 1) & (curve["step"] == 0)]
    return rows.set_index(["eval_task", "eval_set"])[["exact_match", "first_token_acc"]].sort_index()


def test_only_the_selection_seed_scores_the_validation_people(finished):
    config, out, result = finished
    for run_dir in (out / "work" / "runs").iterdir():
        sets = set(map(tuple, pd.read_csv(run_dir / "curve.csv")[["eval_task", "eval_set"]].values))
        seed = int(run_dir.name.rsplit("-s", 1)[1])
        assert (("task0", "val") in sets) == (seed == config.selection_seed), run_dir.name
    # (Task Vector's edits are scored by its own unit, on every set.)
    methods = result.methods.query("method != 'TaskVector'").set_index(["method", "seed"])["task0_val_stop"]
    assert methods.xs(0, level="seed").notna().all() and methods.xs(1, level="seed").isna().all()


def test_every_run_reuses_task0s_last_evaluation_as_its_step_0_and_it_equals_scoring_again(finished, tmp_path):
    """The reuse saves one evaluation per run; scoring the loaded Task 0 model again gives the same rows."""
    from spurious_diag.comparison.jobs import ATTRIBUTES, run_job
    from spurious_diag.comparison.spec import parse_methods

    config, out, _ = finished
    task0 = out / "work" / "task0" / "plain"
    curve = pd.read_csv(task0 / "curve.csv")
    end = curve[(curve["task_index"] == 0) & (curve["step"] == config.recipe.task0_steps)]
    end = end.set_index(["eval_task", "eval_set"])[["exact_match", "first_token_acc"]].sort_index()
    for seed in (0, 1):
        step0 = _step0(out / "work" / "runs" / f"seq-s{seed}")
        pd.testing.assert_frame_equal(step0, end.loc[step0.index])
    # The same run with a Task 0 unit that kept no evaluation scores its step 0 itself.
    bare = tmp_path / "task0"
    shutil.copytree(task0, bare)
    (bare / ATTRIBUTES).unlink()
    unit = tmp_path / "run"
    unit.mkdir()
    run_job(config, unit, parse_methods("SEQ")[0].candidates[0], 0, bare)
    pd.testing.assert_frame_equal(_step0(unit), _step0(out / "work" / "runs" / "seq-s0"))
    attributes = pd.read_csv(unit / "curve.csv")
    assert len(attributes) == len(pd.read_csv(out / "work" / "runs" / "seq-s0" / "curve.csv"))
