"""np.quantile's default ("linear") quantile of one 1-D array, from np.partition.

The same numbers as ``float(np.quantile(values, q))``, without its overheads: numpy's version
goes through ``np.unique`` (which imports ``numpy.ma`` into every gating job) and a generic
n-dimensional path.
"""

from __future__ import annotations

import math

import numpy as np


def linear_quantile(values: np.ndarray, q: float) -> float:
    """``float(np.quantile(values, q))`` for a 1-D array without NaN (``q`` in [0, 1]).

    The order statistics at ``floor((n - 1) q)`` and the next, from one ``np.partition``,
    interpolated as numpy's ``_lerp`` does.
    """
    n = values.size
    if n == 0:
        raise ValueError("linear_quantile of an empty array")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], not {q!r}")
    position = (n - 1) * q
    low = math.floor(position)
    high = min(low + 1, n - 1)
    part = np.partition(values, (low, high)) if high > low else np.partition(values, low)
    return lerp(part[low], part[high], position - low)


def lerp(a: np.generic, b: np.generic, t: float) -> float:
    """numpy's ``_lerp`` of two values of an array (a Python float weight keeps their precision)."""
    diff = b - a
    return float(b - diff * (1 - t) if t >= 0.5 else a + diff * t)
