"""Restart a component after a transient error, with capped jittered backoff.

Anything that is not a ``TransientError`` propagates: the root TaskGroup then stops the
daemon, which exits non-zero so systemd restarts it. A component that returns normally is
done and is not restarted.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway.core.backoff import Backoff
from gateway.core.errors import TransientError

log = logging.getLogger(__name__)


async def supervise(
    name: str, run: Callable[[], Awaitable[None]], backoff: Backoff | None = None
) -> None:
    """Run ``run()`` until it returns; restart it after a ``TransientError``."""
    backoff = backoff or Backoff(1.0, 60.0)
    while True:
        try:
            await run()
            return
        except TransientError as exc:
            delay = backoff.next()
            log.warning(
                "%s failed: %s; restarting in %.1f s", name, exc, delay, extra={"component": name}
            )
            await asyncio.sleep(delay)
