"""The base model shipped in ``spurious_diag/biography/data/base/``."""

import json

import pytest

from spurious_diag.biography import build_scenario
from spurious_diag.biography.pretrain import MANIFEST_NAME, load_base_model, shipped_base_dir
from spurious_diag.biography.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def shipped():
    if not (shipped_base_dir() / MANIFEST_NAME).is_file():
        pytest.fail(f"no shipped base model in {shipped_base_dir()}")
    return load_base_model()


def test_manifest_hash_equals_the_generators(shipped):
    recorded = shipped.manifest["scenario"]
    regenerated = build_scenario(recorded["seed"])
    assert regenerated.sha256 == recorded["sha256"]
    assert regenerated.manifest() == recorded
    assert shipped.scenario().sha256 == recorded["sha256"]


def test_tokenizer_is_the_one_the_generator_builds(shipped):
    rebuilt = build_tokenizer(shipped.scenario().corpus_texts())
    assert shipped.tokenizer.get_vocab() == rebuilt.get_vocab()
    assert shipped.tokenizer("What is the birth city of X?\nAnswer:").input_ids[0] == shipped.tokenizer.bos_token_id


def test_model_shape_and_size(shipped):
    config = shipped.model.config
    assert (config.num_hidden_layers, config.hidden_size, config.tie_word_embeddings) == (4, 128, False)
    assert config.vocab_size == len(shipped.tokenizer)
    assert config.eos_token_id == shipped.tokenizer.eos_token_id
    assert shipped.model.lm_head.weight.data_ptr() != shipped.model.model.embed_tokens.weight.data_ptr()
    assert (shipped_base_dir() / "model.safetensors").stat().st_size < 8_000_000
    pretraining = json.loads((shipped_base_dir() / MANIFEST_NAME).read_text())["pretraining"]
    assert pretraining["steps"] >= 1000 and pretraining["final_loss"] < 1.5


def test_base_model_knows_the_held_out_people_in_biography_format(shipped):
    from spurious_diag.training.evaluate import evaluate_records

    result = evaluate_records(shipped.model, shipped.tokenizer, shipped.scenario().probes("task0_test"),
                              append_eos=False)
    assert result.exact_match > 0.85, result.per_attribute


@pytest.mark.slow
def test_task0_fine_tuning_extracts_held_out_knowledge():
    """DESIGN.md §5's pilot check: QA fine-tuning at lr 3e-4 reaches >= 0.70 on Task 0 test (0.90 after 300
    steps in the pilot). How many steps it takes depends on the CPU's floating-point path, so it trains in
    rounds (300 steps, then 100 at a time) and the knowledge must be extracted within 900 steps."""
    from spurious_diag.training.evaluate import evaluate_records
    from spurious_diag.training.settings import TrainSettings
    from spurious_diag.training.trainer import train_model

    base = load_base_model()  # a fresh copy: training changes it in place
    model, tokenizer, data = base.model, base.tokenizer, base.scenario()
    history = []
    for round_, steps in enumerate([300] + [100] * 6):
        train_model(model, tokenizer, data.qa("task0_train"), TrainSettings(steps=steps, lr=3e-4, batch_size=32),
                    seed=round_)
        result = evaluate_records(model, tokenizer, data.qa("task0_test"))
        history.append(round(result.exact_match, 3))
        if result.exact_match >= 0.70:
            break
    assert result.exact_match >= 0.70, (history, result.per_attribute)
