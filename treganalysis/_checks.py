"""Validation of the library's numeric arguments, one message shape for every function."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np


def check_integer(value: Any, name: str, minimum: int, caller: str | None = None) -> int:
    """``value`` as an int of at least ``minimum`` (a numpy integer too, never a bool), else a
    ValueError naming the argument, the rule and the value given (after ``caller:`` when given)."""
    prefix = f"{caller}: " if caller else ""
    try:
        result = None if isinstance(value, (bool, np.bool_)) else operator.index(value)
    except TypeError:
        result = None
    if result is None or result < minimum:
        shown = repr(value) if result is None else result  # a numpy integer as its number
        raise ValueError(f"{prefix}{name} must be an integer >= {minimum}; got {shown}")
    return int(result)
