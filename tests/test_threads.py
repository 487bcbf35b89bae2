"""Independent steps on several threads (treganalysis._threads) and gating with ``threads``."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from treganalysis._threads import together
from treganalysis.fcs import read_fcs
from treganalysis.gating.strategy import gate_sample
from treganalysis.simulate import simulate_cohort


def test_together_returns_results_in_order_for_any_number_of_threads():
    calls = [lambda i=i: i * i for i in range(7)]
    for threads in (1, 2, 3, 16):
        assert together(calls, threads) == [i * i for i in range(7)]
    assert together([], 2) == []


def test_together_runs_calls_at_once_with_two_threads():
    # each call waits for the other: only two threads at once get both past the barrier
    barrier = threading.Barrier(2, timeout=10)
    assert together([barrier.wait, barrier.wait], 2) in ([0, 1], [1, 0])


def test_together_with_one_thread_runs_in_order_on_the_callers_thread():
    seen = []
    together([lambda: seen.append(threading.current_thread()), lambda: seen.append(threading.current_thread())], 1)
    assert seen == [threading.main_thread()] * 2


def test_together_raises_the_first_error_in_order_after_every_call_finished():
    finished = []

    def slow():
        time.sleep(0.2)
        finished.append("slow")
        return 1

    def fails(message):
        def call():
            raise RuntimeError(message)
        return call

    with pytest.raises(RuntimeError, match="first"):
        together([slow, fails("first"), fails("second")], 2)
    assert finished == ["slow"]  # not left running behind the error
    with pytest.raises(RuntimeError, match="first"):
        together([fails("first"), slow, fails("second")], 3)


def test_together_starts_no_step_after_a_failure_and_raises_an_interrupt_first():
    started = []

    def step(i, error=None):
        def call():
            started.append(i)
            time.sleep(0.1)
            if error is not None:
                raise error
        return call

    with pytest.raises(KeyboardInterrupt):
        together([step(0, ValueError("a user's mistake")), step(1, KeyboardInterrupt()), step(2), step(3)], 2)
    assert sorted(started) == [0, 1]  # the two under way finished; the others never started


def test_together_runs_every_step_under_the_callers_numpy_error_settings():
    barrier = threading.Barrier(2, timeout=10)

    def setting():
        barrier.wait()  # both steps at once: one of them on the helper thread
        return threading.current_thread(), np.geterr()["divide"]

    with np.errstate(divide="raise"):
        found = together([setting, setting], 2)
    assert {thread for thread, _ in found} != {threading.main_thread()}
    assert [value for _, value in found] == ["raise", "raise"]


def test_together_takes_a_numpy_integer():
    assert together([lambda: 1, lambda: 2], np.int64(2)) == [1, 2]


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True, np.True_, None])
def test_together_refuses_a_thread_count_that_is_not_a_positive_whole_number(threads):
    with pytest.raises(ValueError, match=r"threads must be an integer >= 1; got "):
        together([lambda: 1], threads)


@pytest.fixture(scope="module")
def fcs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    simulate_cohort(root, subjects=1, events=30_000, seed=3)
    return sorted((root / "fcs").glob("*.fcs"))[0]


def test_gate_sample_is_the_same_with_two_threads(fcs):
    one = gate_sample(read_fcs(fcs))
    two = gate_sample(read_fcs(fcs), threads=2)
    assert one.rows == two.rows and one.to_json() == two.to_json()
    assert one.masks.keys() == two.masks.keys()
    for name in one.masks:
        np.testing.assert_array_equal(one.masks[name], two.masks[name])
    assert one.transformed.keys() == two.transformed.keys()
    for channel in one.transformed:
        np.testing.assert_array_equal(one.transformed[channel], two.transformed[channel])


def test_gate_sample_refuses_zero_threads(fcs):
    with pytest.raises(ValueError, match=r"^gate_sample: threads must be an integer >= 1; got 0$"):
        gate_sample(read_fcs(fcs), threads=0)


def test_a_failed_gating_stops_the_file_hash_beside_it(fcs, monkeypatch):
    """The SHA-256 runs in a thread beside the gating; when gating fails (here: a marker the
    file lacks) the hash is stopped and its thread waited for, not left reading the file beside
    whatever comes next (the next file of a job)."""
    import treganalysis.gating.strategy as strategy
    from treganalysis.errors import TregAnalysisError

    started, stopped = threading.Event(), threading.Event()

    def endless_hash(path, stop=None):  # a file that takes long to hash: reads until stopped
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                stopped.set()
                raise RuntimeError("stopped")
            time.sleep(0.005)
        return None

    monkeypatch.setattr(strategy, "_sha256", endless_hash)
    config = {"panel": {"channels": {"cd25": "no such channel"}}}
    with pytest.raises(TregAnalysisError):
        gate_sample(read_fcs(fcs), config)
    assert started.is_set() and stopped.is_set()  # stopped, not waited out
    assert not [t for t in threading.enumerate() if t.name == "sha256"]


def test_a_stopped_hash_raises_instead_of_giving_a_digest(tmp_path):
    """A hash stopped before the end of its file is an error, never a digest (nor None), so a
    digest asked for after the gating's block cannot pass for the file's."""
    import treganalysis.gating.strategy as strategy

    path = tmp_path / "events.bin"
    path.write_bytes(b"\0" * (3 << 20))
    stop = threading.Event()
    assert len(strategy._sha256(path, stop)) == 64
    stop.set()
    with pytest.raises(RuntimeError, match="stopped before the end of the file"):
        strategy._sha256(path, stop)
