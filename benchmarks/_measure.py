"""Timing and memory of one call, shared by the benchmark scripts (``bench_foundation.py``,
``bench_pipeline.py``): the same measurement everywhere, so that their tables compare."""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import Any, Callable


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call and its result, with the garbage collector off during the call
    (as ``timeit`` does: a collection inside one run would be noise)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out
    finally:
        gc.enable()


def peak_mb(fn: Callable[[], Any]) -> float:
    """MB allocated at the peak of one call, its result included (``tracemalloc``; numpy reports
    its buffers to it)."""
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return peak / 1e6
