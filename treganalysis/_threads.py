"""Independent steps of one sample's job on several threads.

numpy releases the GIL in its large loops (ufuncs over whole channels, ``take``, ``bincount``
once its input is read, sorting), so two steps that read the same finished arrays and write
their own can share a job's second core. Each step computes exactly what it computes alone: the
results do not depend on the number of threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any


def check_threads(threads: Any, where: str = "threads") -> int:
    """``threads`` as a positive int, or a ValueError naming ``where``."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{where} must be a whole number of at least 1, not {threads!r}")
    return threads


def together(calls: Sequence[Callable[[], Any]], threads: int = 1) -> list[Any]:
    """Make every call and return their results in order.

    Parameters
    ----------
    calls : sequence of callables taking no arguments
        Steps that do not depend on each other's results or write to the same arrays.
    threads : int
        How many calls may run at once, the caller's own thread included (1: one after the
        other, in order, on the caller's thread).

    Returns
    -------
    list
        ``[call() for call in calls]``.

    Raises
    ------
    BaseException
        The first failing call's exception (in the order of ``calls``), once every call has
        finished: no step is left running behind an error.
    """
    check_threads(threads)
    if threads == 1 or len(calls) < 2:
        return [call() for call in calls]
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)
    order = iter(range(len(calls)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            try:
                results[i] = calls[i]()
            except BaseException as exc:  # re-raised in the caller's thread, below
                errors[i] = exc

    helpers = [threading.Thread(target=work, name=f"treganalysis-{k}", daemon=True)
               for k in range(min(threads, len(calls)) - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    for error in errors:
        if error is not None:
            raise error
    return results
