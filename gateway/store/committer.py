"""The store's committer loop: queued records go to disk every ``commit_interval``, and at
once when an alarm or event is queued; rows past their retention are purged on the way.

A full disk is a state, logged once when it starts (``StoreFullError`` from the flush) and
once when there is room again; the loop goes on (``gateway.store.outbox``).
"""

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Protocol

from gateway.store.model import StoreFullError

log = logging.getLogger(__name__)


class Committing(Protocol):
    """What the committer needs of the store (``gateway.store.outbox.Store``)."""

    path: Path

    async def flush(self) -> None: ...

    async def purge_expired(self, now: float) -> int: ...


async def run(
    store: Committing, urgent: asyncio.Event, interval: float, purge_every: float
) -> None:
    """Flush ``store`` every ``interval`` seconds and whenever ``urgent`` is set; purge every
    ``purge_every`` seconds. Until cancelled."""
    full = False
    next_purge = 0.0
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(urgent.wait(), interval)
        urgent.clear()
        if time.monotonic() >= next_purge:
            next_purge = time.monotonic() + purge_every
            await store.purge_expired(time.time())
        try:
            await store.flush()
        except StoreFullError as exc:
            if not full:
                log.error("%s", exc)
            full = True
        else:
            if full:
                log.info("store %s has room again", store.path)
            full = False
