"""The store thread: one call at a time, urgent work before queued normal work."""

from __future__ import annotations

import threading

import pytest

from gateway.store.thread import StoreThread


def test_urgent_work_overtakes_the_queue_but_never_the_call_in_progress() -> None:
    pool = StoreThread()
    ran: list[str] = []
    started, gate = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        gate.wait(10)
        ran.append("slow")

    try:
        first = pool.submit(slow)
        assert started.wait(10)
        normal = [pool.submit(ran.append, f"telemetry-{n}") for n in range(3)]
        alarms = [pool.submit(ran.append, f"alarm-{n}", urgent=True) for n in range(2)]
        gate.set()
        for f in [first, *normal, *alarms]:
            f.result(10)
    finally:
        pool.shutdown()
    assert ran == ["slow", "alarm-0", "alarm-1", "telemetry-0", "telemetry-1", "telemetry-2"]


def test_errors_reach_the_caller_and_shutdown_runs_what_was_queued() -> None:
    pool = StoreThread()
    gate = threading.Event()
    pool.submit(gate.wait, 10)
    failing = pool.submit(int, "not a number")
    queued = pool.submit(sum, [1, 2, 3])
    gate.set()
    pool.shutdown(wait=True)
    with pytest.raises(ValueError, match="invalid literal"):
        failing.result(0)
    assert queued.result(0) == 6
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(sum, [])


def test_a_withdrawn_call_never_runs() -> None:
    pool = StoreThread()
    gate = threading.Event()
    ran: list[int] = []
    try:
        pool.submit(gate.wait, 10)
        withdrawn = pool.submit(ran.append, 1)
        assert withdrawn.cancel()
        kept = pool.submit(ran.append, 2)
        gate.set()
        kept.result(10)
    finally:
        pool.shutdown()
    assert ran == [2]
