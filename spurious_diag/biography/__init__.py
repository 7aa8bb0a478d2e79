"""The Biography benchmark: the paper's controlled experiment, at CPU scale.

Synthetic people with six attributes (:mod:`.people`, values from :mod:`.pools`), their
biographies and QA records (:mod:`.texts`), disjoint splits and a hash (:mod:`.scenario`), a
word-level tokenizer (:mod:`.tokenizer`), a tiny Llama (:mod:`.model`), Trainer-based training
with completion-only loss and batched exact-match evaluation (:mod:`spurious_diag.training`), and base-model pretraining (:mod:`.pretrain`). A pretrained base model (seed-0 scenario, 4 blocks,
hidden 128) ships in ``data/base/``; ``pretrain.load_base_model()`` loads it.

The data-side names are exported here; the model-side modules import transformers and are
imported explicitly (``from spurious_diag.training.trainer import train_model``).
"""

from .people import ATTRIBUTES, Person, generate_people
from .scenario import (PRETRAINING_SPLITS, SPLITS, BiographyData, ScenarioSizes, build_scenario,
                       read_jsonl, scenario_from_manifest, write_jsonl, write_scenario)
from .texts import QARecord

__all__ = [
    "ATTRIBUTES",
    "Person",
    "generate_people",
    "SPLITS",
    "PRETRAINING_SPLITS",
    "ScenarioSizes",
    "BiographyData",
    "build_scenario",
    "scenario_from_manifest",
    "write_scenario",
    "write_jsonl",
    "read_jsonl",
    "QARecord",
]
