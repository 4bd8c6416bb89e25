"""What ``Store.settled`` waits for: every record queued by ``add`` before it, committed.

Records are numbered as ``add`` queues them; a flush takes the whole queue, so it takes a
contiguous range of numbers, and is tracked until its transaction has returned. The store
thread runs urgent work first, so flushes may finish out of order: a caller waits for every
flush that took a record numbered below its mark, not for the latest one.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

from gateway.store.model import StoreFullError


class Settling:
    """Records queued, records taken by a flush, and the flushes still writing."""

    def __init__(self) -> None:
        self.added = 0  # records ``add`` queued (telemetry it dropped is not counted)
        self.taken = 0  # of them, taken by a flush
        self._writing: dict[asyncio.Future[None], int] = {}  # flush -> its first record

    @contextlib.contextmanager
    def flushing(self, count: int) -> Iterator[None]:
        """A flush takes the next ``count`` records and writes them inside the block."""
        done = asyncio.get_running_loop().create_future()
        self._writing[done] = self.taken
        self.taken += count
        try:
            yield
        finally:  # committed, or refused by a full disk, or failed: no longer writing
            del self._writing[done]
            done.set_result(None)

    async def wait(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Return once every record queued before the call was written; ``flush`` takes the
        ones still queued (its ``StoreFullError`` is the committer's to report)."""
        mark = self.added
        if self.taken < mark:
            with contextlib.suppress(StoreFullError):
                await flush()
        writing = [done for done, first in self._writing.items() if first < mark]
        if writing:
            await asyncio.wait(writing)
