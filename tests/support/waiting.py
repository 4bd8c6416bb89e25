"""Waiting for a state that has no event to await (a pin, a monitor's look), with a deadline."""

import asyncio
from collections.abc import Callable


async def wait_until(cond: Callable[[], object], what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Return once ``cond()`` is true; fail the test naming ``what`` after ``timeout`` s."""
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - what is awaited has no event of its own
            await asyncio.sleep(0.01)
    assert cond(), what
