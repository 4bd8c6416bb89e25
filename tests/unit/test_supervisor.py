"""supervise: backoff grows on quick failures and starts again after a run that went well."""

import asyncio

from gateway.core.backoff import Backoff
from gateway.core.errors import TransientError
from gateway.runtime.supervisor import supervise


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _delays(run_lengths: list[float]) -> list[float]:
    """Run a component that fails after each of ``run_lengths`` (clock seconds), then returns."""
    clock = _Clock()
    pauses: list[float] = []

    async def no_sleep(delay: float) -> None:
        pauses.append(delay)

    remaining = list(run_lengths)

    async def run() -> None:
        if not remaining:
            return
        clock.now += remaining.pop(0)
        raise TransientError("down")

    await supervise(
        "c", run, Backoff(1.0, 60.0, jitter=0.0), healthy_after=30.0, clock=clock, sleep=no_sleep
    )
    return pauses


async def test_quick_failures_grow_the_backoff() -> None:
    assert await _delays([0.1, 0.1, 0.1, 0.1]) == [1.0, 2.0, 4.0, 8.0]


async def test_a_run_that_went_well_resets_the_backoff() -> None:
    pauses = await _delays([0.1, 0.1, 0.1, 30.0, 0.1, 29.9])
    assert pauses == [1.0, 2.0, 4.0, 1.0, 2.0, 4.0]


async def test_real_sleep_between_restarts() -> None:
    calls = 0
    done = asyncio.Event()

    async def run() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TransientError("down")
        done.set()

    await supervise("c", run, Backoff(0.001, 0.002))
    assert done.is_set()
    assert calls == 3
