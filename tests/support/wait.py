"""Waiting for a condition that has no event of its own, with a deadline instead of a sleep."""

import asyncio
import time
from collections.abc import Callable


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Poll ``predicate`` every 10 ms until it holds; ``TimeoutError`` naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout:g} s: {what}")
        await asyncio.sleep(0.01)
