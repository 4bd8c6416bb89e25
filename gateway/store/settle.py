"""Waiting until what was queued is committed: the store's answer to "is it kept yet?".

An input that must not say "received" before the gateway has kept a message (an HTTP device
that re-sends what was not answered 200) hands the message to the pipeline, then awaits
``Settle.wait()``: it returns once every record queued before the call is committed, and
raises if the commit that carried one failed.

Contract:
- ``queued()`` counts a record the store accepted into its queue (``Store.add``); a record
  dropped there for want of room counts too (it is in a gap report, which is what the store
  promises for telemetry).
- A flush takes a contiguous range of what was queued (``take``) and reports it ``finished``,
  with the error if its commit failed. Flushes may finish out of order (alarms overtake on the
  store thread); a waiter is answered only when every range up to its record has finished.
- ``wait()`` captures the count at the call: records queued afterwards never delay it.
  Cancelling a waiter cancels only the wait.
- Memory: one future per waiter; nothing else grows.
"""

import asyncio


class Settle:
    """Counts records queued and committed; wakes who waits for a committed prefix."""

    def __init__(self) -> None:
        self.added = 0  # records queued so far
        self._taken = 0  # records handed to a flush so far
        self._open: dict[int, int] = {}  # start -> end of each range a flush has not finished
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def queued(self) -> None:
        """One more record was queued."""
        self.added += 1

    def take(self) -> int:
        """A flush takes everything queued so far; returns the start of its range."""
        start, self._taken = self._taken, self.added
        if self._taken > start:
            self._open[start] = self._taken
        return start

    def finished(self, start: int, error: BaseException | None = None) -> None:
        """The flush of the range starting at ``start`` ended (``error`` if it failed)."""
        end = self._open.pop(start, start)
        settled = min(self._open, default=self._taken)
        kept: list[tuple[int, asyncio.Future[None]]] = []
        for target, fut in self._waiters:
            if fut.done():
                continue
            if error is not None and start < target <= end:
                fut.set_exception(error)
            elif target <= settled:
                fut.set_result(None)
            else:
                kept.append((target, fut))
        self._waiters = kept

    async def wait(self) -> None:
        """Return once every record queued before this call is committed; raises the error
        of the commit that failed to take one."""
        target = self.added
        if target <= min(self._open, default=self._taken):
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        await fut
