"""One settings dataclass, checked once; the train command's options; a run's identity on resume."""

import dataclasses
import json

import pytest

from spurious_diag.errors import CheckpointNotFoundError, InvalidDataError, UsageError
from spurious_diag.training.resume import check_identity, read_identity, write_identity
from spurious_diag.training.settings import FinetuneOptions, TrainSettings


@pytest.mark.parametrize("change,needle", [
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"lr": 0.0}, "lr must be a positive number"),
    ({"lr": float("inf")}, "lr must be a positive number"),
    ({"batch_size": 0}, "batch_size"),
    ({"schedule": "step"}, "schedule must be one of"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ({"early_stop_at": 0.0}, "early_stop_at must be in (0, 1]"),
    ({"early_stop_at": 1.2}, "early_stop_at must be in (0, 1]"),
    ({"optimizer": "sgd"}, "optimizer must be one of"),
])
def test_every_bad_setting_is_a_usage_error_naming_it(change, needle):
    with pytest.raises(UsageError) as info:
        dataclasses.replace(TrainSettings(), **change)
    assert needle in str(info.value) and info.value.exit_code == 2


def test_finetune_options_check_their_own_fields():
    for change in ({"freeze_layers": -1}, {"eval_every": -1}, {"save_every": -2}, {"device": "tpu"}):
        with pytest.raises(UsageError):
            FinetuneOptions(**change)


def test_flat_dict_round_trip_and_unknown_keys():
    options = FinetuneOptions.from_dict({"steps": 5, "lr": 1e-3, "freeze_layers": 2, "weight_decay": 0.1})
    assert options.to_dict()["steps"] == 5 and options.to_dict()["freeze_layers"] == 2
    assert FinetuneOptions.from_dict(options.to_dict()) == options
    with pytest.raises(UsageError, match="unknown settings \\['stepz'\\]"):
        FinetuneOptions.from_dict({"stepz": 5})


@pytest.mark.parametrize("content,needle", [
    ("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), ('{"stepz": 1}', "unknown settings"),
    ('{"steps": 0}', "steps must be an integer >= 1"),
])
def test_a_bad_config_file_is_invalid_data_naming_the_file(tmp_path, content, needle):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(InvalidDataError) as info:
        FinetuneOptions.from_config_file(str(path))
    assert needle in str(info.value) and str(path) in str(info.value)


def test_identity_check_names_every_difference(tmp_path):
    saved = {"model": "/m", "config": FinetuneOptions.from_dict({"steps": 2}).to_dict()}
    write_identity(tmp_path, saved)
    assert read_identity(tmp_path, "a run") == json.loads(json.dumps(saved))
    check_identity(read_identity(tmp_path, "a run"), saved, tmp_path)  # the same run: no error
    now = {"model": "/other", "config": FinetuneOptions.from_dict({"steps": 3}).to_dict()}
    with pytest.raises(UsageError) as info:
        check_identity(read_identity(tmp_path, "a run"), now, tmp_path)
    message = str(info.value)
    assert "config.steps: 2 then, 3 now" in message and "model: '/m' then, '/other' now" in message


def test_no_identity_is_nothing_to_resume(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="nothing to resume from"):
        read_identity(tmp_path, "a run")
