"""Train and evaluate any HF causal LM on prompt/completion records.

:mod:`.settings` (how a task is trained), :mod:`.records` (reading and encoding JSONL),
:mod:`.trainer` (``Trainer`` with completion-only loss), :mod:`.callbacks` (evaluation and early
stopping while training), :mod:`.checkpoints` and :mod:`.resume` (full-state checkpoints and a
run's identity), :mod:`.engine` (freeze, snapshot, train, verify: one task), :mod:`.evaluate`
(batched greedy exact match), and :mod:`.finetune` (the ``train`` command's engine).
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "engine": ["TaskRun", "train_task"],
    "evaluate": ["evaluate_records"],
    "finetune": ["finetune"],
    "records": ["read_records"],
    "settings": ["FinetuneOptions", "TrainSettings"],
    "trainer": ["train_model"],
})
