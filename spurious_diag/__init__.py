"""spurious_diag: tell whether a fine-tuned LLM forgot a task, or only its alignment.

The pipeline, one sub-package each, data flowing down the list:

- ``io``: load checkpoints lazily, one tensor at a time (HF dirs, safetensors, ``.bin``, GGUF,
  LoRA adapters, in-memory models), chains of them, and the exact layer map;
- ``geometry``: pure math on tensors (update sizes, singular bases, principal angles, overlap);
- ``updates``: the audit engine (plan the updates and pairs, Gram pass, bases, rows, summary);
- ``training`` and ``freeze``: one training engine (freeze, snapshot, train, verify) for any HF
  causal LM, ``freeze_bottom_layers`` and the bit-identity proof;
- ``continual``: the continual-learning methods and the runner that trains task after task;
- ``probes``: recovery, format probe, linear probes, grafting, residual shift, and ``diagnose``;
- ``biography``: the paper's controlled experiment at CPU scale, and the demo;
- ``comparison``: the continual-learning methods compared on the Biography tasks, each free
  setting chosen on validation people (``spurious-diag compare``);
- ``plots``: one function per figure, DataFrames in, Figure out;
- ``report``: every ``report.md`` / ``summary.json`` / CSV writer;
- ``cli``: the ``spurious-diag`` command, a thin shell over the library.

The names below are what scripts use; everything else stays importable from its module. They
load on first use, so ``import spurious_diag`` is quick.
"""

import lazy_loader as lazy

from ._version import __version__

__getattr__, __dir__, _lazy_all = lazy.attach(__name__, submod_attrs={
    "errors": ["SpuriousDiagError"],
    "io.checkpoint": ["Checkpoint"],
    "io.layer_map": ["ParamInfo", "parse_param_name"],
    "io.loader": ["load_checkpoint"],
    "io.chain": ["load_chain"],
    "geometry.angles": ["principal_angles"],
    "geometry.sizes": ["update_sizes"],
    "updates.engine": ["AuditResult", "audit"],
    "updates.options": ["AuditOptions"],
    "freeze.freezing": ["freeze_bottom_layers"],
    "freeze.verify": ["verify_frozen"],
    "training.engine": ["train_task"],
    "training.finetune": ["finetune"],
    "training.settings": ["FinetuneOptions", "TrainSettings"],
    "continual.methods": ["Method"],
    "continual.runner": ["run_sequence"],
    "probes.diagnose": ["diagnose"],
    "probes.diagnosis": ["Diagnosis"],
    "probes.options": ["DiagnoseOptions", "RecoverySettings"],
    "biography.pretrain": ["load_base_model"],
    "comparison.config": ["CompareConfig"],
    "comparison.runner": ["run_comparison"],
})

__all__ = ["__version__", *_lazy_all]
