"""Independent steps of one sample's job on several threads.

numpy releases the GIL in its large loops (ufuncs over whole channels, ``take``, ``bincount``
once its input is read, sorting), so two steps that read the same finished arrays and write
their own can share a job's second core. Each step computes exactly what it computes alone: the
results do not depend on the number of threads.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._checks import check_integer


def check_threads(threads: Any, what: str | None = None) -> int:
    """``threads`` as a positive int (a numpy integer too), or a ValueError (its message
    starting with ``what:`` when given, the function that was called)."""
    return check_integer(threads, "threads", 1, what)


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
        Once the calls under way have finished (no step is left running behind an error, and
        none starts after one): an interrupt (KeyboardInterrupt, SystemExit) first, else the
        first failing call's exception in the order of ``calls``.

    Notes
    -----
    Each helper thread runs in a copy of the caller's context, so that settings kept in
    context variables (numpy's ``np.errstate``) hold for every step, whichever thread runs it.
    """
    threads = check_threads(threads)
    if threads == 1 or len(calls) < 2:
        return [call() for call in calls]
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)
    order = iter(range(len(calls)))
    lock = threading.Lock()
    failed = threading.Event()

    def work() -> None:
        while not failed.is_set():
            with lock:
                i = next(order, None)
            if i is None:
                return
            try:
                results[i] = calls[i]()
            except BaseException as exc:  # re-raised in the caller's thread, below
                errors[i] = exc
                failed.set()

    helpers = [threading.Thread(target=contextvars.copy_context().run, args=(work,), name=f"treganalysis-{k}",
                                daemon=True)
               for k in range(min(threads, len(calls)) - 1)]
    for helper in helpers:
        helper.start()
    try:
        work()
    finally:  # an interrupt in the caller's own wait, too, lets the helpers' steps end first
        failed.set()
        for helper in helpers:
            helper.join()
    raised = [error for error in errors if error is not None]
    interrupt = next((error for error in raised if not isinstance(error, Exception)), None)
    if interrupt is not None or raised:
        raise interrupt or raised[0]
    return results
