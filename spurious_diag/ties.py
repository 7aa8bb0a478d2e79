"""Choosing the best of measured values, with ties that survive floating point.

Accuracies here are means over attributes, so two equal fractions can differ in their last bits
(−46/240 came out as −0.19166666666666665 and −0.19166666666666668), and an ``argmax`` would
then pick by rounding noise. Every choice of a setting (the freeze depth, a method's setting on
validation, the recovery settings) takes the first of the values within :data:`TIE` of the best.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["TIE", "first_best"]

TIE = 1e-9


def first_best(values: Sequence[float]) -> int:
    """Index of the largest of ``values``: the first one within :data:`TIE` of the maximum.

    >>> first_best([-0.19166666666666668, -0.19166666666666665]), first_best([0.1, 0.3, 0.3 + 1e-12])
    (0, 1)
    >>> first_best([0.2, 0.5])
    1
    """
    if not values:
        raise ValueError("no values to choose from")
    top = max(values)
    return next(i for i, v in enumerate(values) if v >= top - TIE)
