"""The Biography benchmark: the paper's controlled experiment, at CPU scale, and the demo.

Synthetic people with six attributes (:mod:`.people`, values from :mod:`.pools`), their
biographies and QA records (:mod:`.texts`), disjoint splits and a hash (:mod:`.scenario`), a
word-level tokenizer (:mod:`.tokenizer`), a tiny Llama (:mod:`.model`, shape and pretraining
defaults in :mod:`.defaults`), base-model pretraining (:mod:`.pretrain`), the recipe that the
demo, the benchmarks and the notebook share (:mod:`.recipe`), the tasks trained by it
(:mod:`.tasks`), and the demo, the main job (:mod:`.demo`, configured by :mod:`.demo_config`).
A pretrained base model (seed-0 scenario, 4 blocks, hidden 128) ships in ``data/base/``;
``pretrain.load_base_model()`` loads it.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "people": ["ATTRIBUTES"],
    "scenario": ["BiographyData", "ScenarioSizes", "build_scenario"],
    "texts": ["QARecord"],
})
