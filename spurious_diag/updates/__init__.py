"""Extract and measure: the audit engine.

Plan which updates and pairs a list of checkpoints defines (:mod:`.plan`), open and align the
inputs (:mod:`.sources`), stream each tensor through the Gram pass (:mod:`.gram`), take the
singular bases of its updates (:mod:`.bases`), and turn them into tidy rows (:mod:`.rows`) and
a summary (:mod:`.summary`); :func:`audit` (:mod:`.engine`) runs it all, with the
:class:`AuditOptions` of :mod:`.options`.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "engine": ["AuditResult", "audit"],
    "options": ["AuditOptions"],
    "rows": ["PAIR_COLUMNS", "UPDATE_COLUMNS"],
})
