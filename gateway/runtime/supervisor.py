"""Restart a component after a transient error, with capped jittered backoff.

Anything that is not a ``TransientError`` propagates: the root TaskGroup then stops the
daemon, which exits non-zero so systemd restarts it. A component that returns normally is
done and is not restarted. A component that ran well (``healthy_after`` seconds without
failing) before a transient error starts its backoff again from the base delay, so one
failure after days of service costs a short pause, not the cap earned by an old outage.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.core.backoff import Backoff
from gateway.core.errors import TransientError

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 60.0


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    backoff: Backoff | None = None,
    *,
    healthy_after: float = HEALTHY_AFTER_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run ``run()`` until it returns; restart it after a ``TransientError``.

    "Ran well" means one call of ``run()`` lasted at least ``healthy_after`` seconds (by
    ``clock``) before it raised: the backoff is then reset before the next pause, so the pause
    is the base delay again. A run that fails sooner keeps growing the backoff. ``clock``
    and ``sleep`` are seams for tests.
    """
    backoff = backoff or Backoff(1.0, 60.0)
    while True:
        started = clock()
        try:
            await run()
            return
        except TransientError as exc:
            if clock() - started >= healthy_after:
                backoff.reset()
            delay = backoff.next()
            log.warning(
                "%s failed: %s; restarting in %.1f s", name, exc, delay, extra={"component": name}
            )
            await sleep(delay)
