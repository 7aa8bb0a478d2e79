"""Flags generated from the options dataclasses: names, defaults, nesting, and one-line errors."""

import argparse
import json
import subprocess
import sys

import pytest

from spurious_diag.cli import main
from spurious_diag.cli.options import add_options, options_from_args
from spurious_diag.probes.options import DiagnoseOptions, RecoverySettings
from spurious_diag.training.settings import FinetuneOptions, TrainSettings
from spurious_diag.updates.options import AuditOptions


def _parse(cls, argv, base=None):
    parser = argparse.ArgumentParser()
    add_options(parser, cls)
    return options_from_args(cls, parser.parse_args(argv), base)


def test_no_flag_given_means_the_defaults():
    assert _parse(AuditOptions, []) == AuditOptions()
    assert _parse(DiagnoseOptions, []) == DiagnoseOptions()
    assert _parse(FinetuneOptions, []) == FinetuneOptions()


def test_flags_set_fields_including_custom_parsers_and_negatives():
    options = _parse(AuditOptions, ["--rank", "energy", "--no-angles", "--base", "--pairs", "consecutive",
                                    "--modules", "attn"])
    assert options == AuditOptions(rank="energy", angles=False, base=True, pairs="consecutive", modules="attn")
    assert _parse(AuditOptions, ["--rank", "8"]).rank == 8


def test_nested_options_get_their_prefix():
    options = _parse(DiagnoseOptions, ["--recovery-n", "5,20", "--recovery-lr", "3e-4", "--recovery-batch", "4",
                                       "--probes", "recovery,grafting", "--graft-ks", "0,1", "--max-candidates", "0"])
    assert options.recovery == RecoverySettings(ns=(5, 20), lr=3e-4, batch_size=4)
    assert options.probes == ("recovery", "grafting") and options.graft_ks == (0, 1)
    assert options.max_candidates is None  # 0: the whole pool
    train = _parse(FinetuneOptions, ["--steps", "7", "--early-stop-at", "0.5", "--freeze-layers", "2",
                                     "--no-freeze-embeddings"])
    assert train.settings == TrainSettings(steps=7, early_stop_at=0.5) and train.freeze_layers == 2
    assert train.freeze_embeddings is False


def test_flags_override_a_base_and_keep_the_rest():
    base = FinetuneOptions.from_dict({"steps": 50, "lr": 1e-3, "seed": 3})
    options = _parse(FinetuneOptions, ["--lr", "2e-3"], base)
    assert options.settings.steps == 50 and options.settings.lr == 2e-3 and options.seed == 3


def test_fields_marked_off_the_command_line_have_no_flag():
    parser = argparse.ArgumentParser()
    add_options(parser, AuditOptions)
    flags = {s for a in parser._actions for s in a.option_strings}
    assert "--chunk-bytes" not in flags and "--dtype" not in flags and "--rank" in flags


@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "M", "--data", "D", "--out", "O", "--steps", "0"], "steps must be an integer >= 1"),
    (["train", "--model", "M", "--data", "D", "--out", "O", "--lr", "-1"], "lr must be a positive number"),
    (["diagnose", "B", "A", "--task", "T", "--out", "O", "--recovery-n", "0"], "recovery n must be an integer >= 1"),
    (["audit", "A", "B", "--out", "O", "--rank", "0"], "rank must be a positive integer"),
    (["audit", "A", "B", "--out", "O", "--rank", "high"], "--rank: rank must be a positive integer"),
    (["diagnose", "B", "A", "--task", "T", "--out", "O", "--probes", "vibes"], "unknown probes"),
])
def test_bad_values_end_in_one_line_and_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse reports a flag it cannot parse: usage, then one error line
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert needle in err[-1] and "error" in err[-1]
    assert [line for line in err if "error" in line] == [err[-1]] and "Traceback" not in "".join(err)
    assert not (tmp_path / "O").exists()  # nothing created


def test_building_the_parser_imports_no_torch():
    code = ("import sys; from spurious_diag.cli.app import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'transformers', 'pandas', 'matplotlib') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_config_file_keys_are_the_flat_settings(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 9, "freeze_layers": 1, "early_stop_at": 0.8}))
    options = FinetuneOptions.from_config_file(str(path))
    assert options.settings.steps == 9 and options.settings.early_stop_at == 0.8 and options.freeze_layers == 1
    assert FinetuneOptions.from_dict(options.to_dict()) == options


def test_help_shows_the_base_values_as_defaults():
    """``pretrain --help`` shows the shipped model's steps and lr, not TrainSettings' own defaults."""
    from spurious_diag.biography.defaults import PRETRAINING

    parser = argparse.ArgumentParser()
    add_options(parser, TrainSettings, base=PRETRAINING, only=("steps", "lr"))
    text = parser.format_help()
    assert f"(default {PRETRAINING.steps})" in text and f"(default {PRETRAINING.lr})" in text
    assert f"(default {TrainSettings().steps})" not in text
