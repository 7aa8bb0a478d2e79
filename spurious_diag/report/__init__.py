"""Report: every writer of ``report.md``, ``summary.json`` and CSV files, once.

:mod:`.common` (CSV and JSON writers, the summary header, table cells), then one module per
kind of output: :mod:`.audit`, :mod:`.diagnosis`, :mod:`.demo` (with :mod:`.figures`, the PNGs of
a run), :mod:`.train`. Results never import their renderers; only the command line and the
demo import this package.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "audit": ["write_audit_report"],
    "demo": ["write_demo_outputs"],
    "diagnosis": ["diagnosis_markdown", "write_diagnosis_report"],
    "figures": ["make_figures"],
    "train": ["write_train_report"],
})
