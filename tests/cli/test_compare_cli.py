"""``spurious-diag compare``: bad input is one line and a non-zero exit, and nothing is left behind."""

from __future__ import annotations

import pytest

from spurious_diag.cli import main
from spurious_diag.errors import OutputDirError


@pytest.mark.parametrize("argv, words, code", [
    (["--methods", "SEQ,Foo"], "unknown method", 2),
    (["--methods", "EWC(1e6),EWC(1e7)"], "named twice", 2),
    (["--tasks", "9"], "tasks must be 1..5", 2),
    (["--seeds", "0,0"], "distinct", 2),
    (["--tolerance", "2"], "tolerance", 2),
    (["--resume", "--overwrite"], "pass one of them", 2),
])
def test_bad_settings_are_one_line_and_exit_2(argv, words, code, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", "--out", str(out), *argv]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and err[0].startswith("spurious-diag compare: error:")
    assert not out.exists()


def test_resume_without_a_comparison_says_so(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code = main(["compare", "--out", str(tmp_path / "out"), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == OutputDirError.exit_code and len(err) == 1 and "nothing to resume" in err[0]


def test_a_non_empty_out_is_refused_without_resume(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["compare", "--out", str(tmp_path / "out")]) == OutputDirError.exit_code
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_unparseable_seeds_are_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["compare", "--out", str(tmp_path / "out"), "--seeds", "0,x"])
    assert info.value.code == 2


def test_a_base_that_is_not_a_base_model_is_named_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", "--base", str(tmp_path / "missing"), "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "missing") in err[0] and "biography_manifest.json" in err[0]
    assert not out.exists()
