"""Compare continual-learning methods on the Biography tasks (``spurious-diag compare``).

:mod:`.spec` parses the methods and the settings each may take; :mod:`.config` is what a
comparison runs (:class:`CompareConfig`); :mod:`.jobs` are its units of work (Task 0, EWC's
Fisher, one run, a Task Vector sweep), kept in folders by :mod:`.store` so that ``--resume``
continues a killed comparison; :mod:`.runner` runs them in worker processes and chooses every
free setting on the Task 0 validation people (:mod:`.selection`) as soon as it can;
:mod:`.rows` and :mod:`.summary` turn the runs' tables into the numbers reported.
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(__name__, submod_attrs={
    "config": ["CompareConfig"],
    "runner": ["ComparisonResult", "run_comparison"],
    "spec": ["parse_methods"],
})
