"""``spurious-diag diagnose`` on saved tiny checkpoints."""

import argparse
import copy
import json

import pytest
import torch

from spurious_diag.cli import diagnose_cmd
from spurious_diag.errors import OutputDirError
from tests.probes.conftest import as_json


def _parse(argv):
    parser = argparse.ArgumentParser()
    diagnose_cmd.add_parser(parser.add_subparsers())
    return parser.parse_args(["diagnose", *argv])


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def saved(bio_base, tmp_path_factory):
    base, tokenizer, scenario = bio_base
    root = tmp_path_factory.mktemp("diagnose")
    after = copy.deepcopy(base)
    with torch.no_grad():
        for p in after.model.layers[0].parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    for name, model in (("before", base), ("after", after)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    task = _write_jsonl(root / "old.jsonl", as_json(scenario.qa("task0_test")[:24]))
    bios = _write_jsonl(root / "bios.jsonl", as_json(scenario.probes("task0_test")[:24]))
    return root, task, bios


def test_writes_tables_summary_and_report(saved):
    root, task, bios = saved
    out = root / "out"
    args = _parse([str(root / "before"), str(root / "after"), "--task", task, "--pretrain-format", bios,
                   "--out", str(out), "--probes", "recovery,format,shift,geometry", "--recovery-n", "6",
                   "--recovery-steps", "2", "--max-candidates", "4"])
    assert diagnose_cmd.run(args) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["accuracy.csv", "format.csv", "format_overall.csv", "geometry.csv", "recovery.csv", "report.md",
                     "residual_shift.csv", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "diagnosis" and summary["verdict"] in ("spurious", "real", "inconclusive")
    assert summary["settings"]["recovery"]["ns"] == [6] and summary["settings"]["inputs"]["task"] == task
    assert summary["settings"]["split"]["by"] == "person_id"
    assert "## Verdict" in (out / "report.md").read_text()

    with pytest.raises(OutputDirError, match="not empty"):
        diagnose_cmd.run(args)
    args.overwrite = True
    args.probes = ("shift",)
    assert diagnose_cmd.run(args) == 0
    assert "recovery.csv" not in {p.name for p in out.iterdir()}


def test_refuses_an_output_inside_an_input(saved):
    root, task, _ = saved
    args = _parse([str(root / "before"), str(root / "after"), "--task", task, "--out", str(root / "before" / "x")])
    with pytest.raises(OutputDirError, match="overlaps"):
        diagnose_cmd.run(args)


def test_bad_options_are_usage_errors(capsys):
    from spurious_diag.cli import main

    for bad in (["--probes", "nonsense"], ["--recovery-n", "0"], ["--test-fraction", "1.5"]):
        assert main(["diagnose", "a", "b", "--task", "t", "--out", "o", *bad]) == 2
        assert capsys.readouterr().err.count("error:") == 1


def test_registered_in_the_cli_app():
    from spurious_diag.cli import app

    assert "diagnose" in app.COMMANDS
    with pytest.raises(SystemExit) as exc:
        app.main(["diagnose", "--help"])
    assert exc.value.code == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is present")
@pytest.mark.parametrize("after", ["after", "run"])
def test_cuda_without_a_gpu_is_one_line_and_exit_2(saved, tmp_path, capsys, after):
    """Asked for CUDA where there is none, diagnose refuses before loading a model: no silent CPU
    fall-back, no output directory left behind (a single diagnosis or a run's maps)."""
    from spurious_diag.cli import main

    root, task, _ = saved
    if after == "run":
        (tmp_path / "run" / "checkpoint-1").mkdir(parents=True)
        target = tmp_path / "run"
        (target / "checkpoint-1" / "config.json").write_text((root / "after" / "config.json").read_text())
    else:
        target = root / "after"
    out = tmp_path / "out"
    assert main(["diagnose", str(root / "before"), str(target), "--task", task, "--device", "cuda",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device is available" in err[0]
    assert not out.exists()


def test_device_and_dtype_are_checked_and_recorded(saved, capsys):
    from spurious_diag.cli import main

    root, task, _ = saved
    with pytest.raises(SystemExit) as exc:  # argparse: the choices are listed
        main(["diagnose", "a", "b", "--task", "t", "--out", "o", "--dtype", "int8"])
    assert exc.value.code == 2 and "invalid choice: 'int8'" in capsys.readouterr().err
    assert main(["diagnose", str(root / "before"), str(root / "after"), "--task", task, "--device", "warp-drive",
                 "--out", str(root / "never")]) == 2
    assert "unknown device 'warp-drive'" in capsys.readouterr().err and not (root / "never").exists()
    args = _parse([str(root / "before"), str(root / "after"), "--task", task, "--probes", "shift",
                   "--dtype", "bfloat16", "--out", str(root / "bf16")])
    assert diagnose_cmd.run(args) == 0
    settings = json.loads((root / "bf16" / "summary.json").read_text())["settings"]
    assert (settings["device"], settings["dtype"]) == ("cpu", "bfloat16")
