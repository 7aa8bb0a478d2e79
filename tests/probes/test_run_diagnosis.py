"""``spurious-diag diagnose BEFORE RUN_DIR``: the forgetting maps and the recovery curve over the
``checkpoint-N`` folders that ``spurious-diag train --save-every`` writes, end to end on the
shipped Biography base model."""

import json

import pandas as pd
import pytest

from spurious_diag.biography.pretrain import shipped_base_dir
from spurious_diag.cli import main
from spurious_diag.probes.run_diagnosis import select_steps
from tests.conftest import tree_digest

pytestmark = pytest.mark.slow


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _qa(records):
    return [{"prompt": r.prompt, "completion": r.completion, "attribute": r.attribute, "person_id": r.person_id}
            for r in records]


@pytest.fixture(scope="module")
def run(scenario, tmp_path_factory):
    """``before``: the base trained until it answers most of 4 people's Task 0 questions (the old
    task); then a run on Task 1 saved every 4 steps."""
    root = tmp_path_factory.mktemp("run-diagnosis")
    people = sorted({r.person_id for r in scenario.qa("task0_train")})
    old_people, other_people = set(people[:4]), set(people[4:12])
    old = _jsonl(root / "old.jsonl", _qa([r for r in scenario.qa("task0_train") if r.person_id in old_people]))
    other = _jsonl(root / "other.jsonl", _qa([r for r in scenario.qa("task0_train") if r.person_id in other_people]))
    new = _jsonl(root / "new.jsonl", _qa(scenario.qa("task1")[:48]))
    # How many steps memorize the old task depends on the CPU's floating-point path: grow the budget
    # until an evaluation reaches the target (and check that it did).
    for budget in (60, 120, 240):
        before = root / f"before-{budget}"
        assert main(["-q", "--threads", "1", "train", "--model", str(shipped_base_dir()), "--data", old, "--eval", old,
                     "--out", str(before), "--steps", str(budget), "--lr", "3e-3", "--batch-size", "8",
                     "--eval-every", "5", "--early-stop-at", "0.75"]) == 0
        if pd.read_csv(before / "metrics.csv")["exact_match"].iloc[-1] >= 0.75:
            break
    else:
        pytest.fail("precondition: the old task was not learned to 0.75 within 240 steps")
    after = root / "after"
    assert main(["-q", "--threads", "1", "train", "--model", str(before), "--data", new, "--out", str(after),
                 "--steps", "12", "--lr", "3e-3", "--batch-size", "8", "--save-every", "4"]) == 0
    return root, before, after / "checkpoints", old, other


def test_diagnose_a_run_directory_writes_the_maps(run, tmp_path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from spurious_diag.training.evaluate import evaluate_records

    root, before, chain, old, other = run
    digest = tree_digest(chain)
    out = tmp_path / "out"
    code = main(["-q", "--threads", "1", "diagnose", str(before), str(chain), "--task", old, "--recovery-task", other,
                 "--base", str(shipped_base_dir()), "--out", str(out), "--probes", "recovery,linear",
                 "--recovery-n", "8", "--recovery-steps", "2"])
    assert code == 0
    assert tree_digest(chain) == digest  # the run is only read
    files = {p.name for p in out.iterdir()}
    assert {"forgetting_map.csv", "probe_map.csv", "recovery_by_step.csv", "summary.json", "report.md"} <= files
    assert {p.name for p in (out / "figures").iterdir()} == {"forgetting_map.png", "forgetting_map_bottom.png",
                                                             "probe_map.png", "recovery_by_step.png"}
    fmap = pd.read_csv(out / "forgetting_map.csv")
    steps = sorted(int(p.name.split("-")[1]) for p in chain.glob("checkpoint-*"))
    assert sorted(fmap["step"].unique()) == steps
    summary = json.loads((out / "summary.json").read_text())
    acc_before = summary["summary"]["acc_before"]
    assert acc_before >= 0.75
    # reverting every layer gives exactly the accuracy before the new task, at every step
    deepest = fmap[(fmap["arm"] == "bottom") & (fmap["layer"] == fmap["layer"].max())]
    assert (deepest["acc"] == acc_before).all() and len(deepest) == len(steps)
    # reverting none is the checkpoint's own accuracy, as a direct evaluation scores it
    records = [json.loads(line) for line in open(old, encoding="utf-8")]
    last = LlamaForCausalLM.from_pretrained(chain / f"checkpoint-{steps[-1]}").eval()
    direct = evaluate_records(last, AutoTokenizer.from_pretrained(str(before)), records).exact_match
    assert (fmap.loc[fmap["step"] == steps[-1], "acc_step"] == direct).all()
    recovery = pd.read_csv(out / "recovery_by_step.csv")
    assert sorted(recovery["step"].unique()) == steps and (recovery["n"] == 8).all()
    assert recovery["control_acc"].notna().all()
    report = (out / "report.md").read_text()
    assert "![forgetting_map](figures/forgetting_map.png)" in report and "Lowest old-task accuracy" in report

    # --every 2 reads every other checkpoint and always the last
    out2 = tmp_path / "out2"
    assert main(["-q", "--threads", "1", "diagnose", str(before), str(chain), "--task", old, "--out", str(out2),
                 "--probes", "grafting", "--every", "2"]) == 0
    thinned = pd.read_csv(out2 / "forgetting_map.csv")
    assert sorted(thinned["step"].unique()) == [s for s, _ in select_steps([(s, "") for s in steps], 2)]
    assert not (out2 / "recovery_by_step.csv").exists()


def test_bad_every_is_a_usage_error(run, tmp_path, capsys):
    root, before, chain, old, _ = run
    assert main(["diagnose", str(before), str(chain), "--task", old, "--out", str(tmp_path / "o"),
                 "--every", "0"]) == 2
    assert "--every" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
