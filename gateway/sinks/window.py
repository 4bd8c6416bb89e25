"""The upstream sink's in-flight bookkeeping: which rows await a PUBACK, and how many may.

- ``AckTracker``: the rows in flight per lane, in send order; how far each lane is
  acknowledged without a hole (the sink confirms only that prefix to the store).
- ``Window``: at most ``max_inflight`` rows awaiting PUBACK, of which at most
  ``telemetry_inflight`` telemetry, so an alarm always finds a slot.

No I/O: the sink (``gateway.sinks.mqtt``) feeds both.
"""

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from gateway.core.messages import Lane
from gateway.store.outbox import Row


class AckTracker:
    """Rows in flight per lane; yields how far each lane is acknowledged without holes."""

    def __init__(self) -> None:
        # per lane, in send order: row id -> monotonic send time, or None once acknowledged
        self._flight: dict[Lane, OrderedDict[int, float | None]] = {
            ln: OrderedDict() for ln in Lane
        }
        self.upto: dict[Lane, int] = {}
        self.unsaved = 0
        self.published: Row | None = None  # the last row handed to the client's publish

    def sent(self, row: Row, now: float) -> None:
        """``row`` was handed to the client at monotonic time ``now``."""
        self._flight[row.lane][row.id] = now

    def acked(self, row: Row) -> None:
        """``row`` got its PUBACK."""
        flight = self._flight[row.lane]
        flight[row.id] = None
        while flight:
            first = next(iter(flight))
            if flight[first] is not None:
                break
            flight.popitem(last=False)
            self.upto[row.lane] = first
        self.unsaved += 1

    def pending(self) -> list[tuple[Lane, int]]:
        """``(lane, id)`` of every row in flight without its PUBACK, each lane in send order."""
        return [
            (lane, rid) for lane, f in self._flight.items() for rid, t in f.items() if t is not None
        ]

    def oldest(self) -> float | None:
        """Send time of the longest-waiting unacknowledged row (the head of some lane)."""
        heads = [next(iter(f.values())) for f in self._flight.values() if f]
        return min((t for t in heads if t is not None), default=None)


class Window:
    """At most ``size`` rows awaiting PUBACK, of which at most ``telemetry`` telemetry rows.

    Telemetry never takes the last slots, so an alarm finds a free one at once instead of
    queuing behind a full window of backlog in the client, the socket and the broker. A
    telemetry row waiting for its share gives its turn back as soon as a more urgent row is
    committed (``changed()`` gives a future that completes at the next commit), not only when
    a telemetry PUBACK frees a slot: PUBACKs that stall (a lossy link, F07) would otherwise
    hold the alarm back, the drain loop parked behind the full telemetry share.
    """

    def __init__(self, size: int, telemetry: int) -> None:
        self._all = asyncio.Semaphore(size)
        self._telemetry_max = max(1, min(telemetry, size))
        self._telemetry = 0
        self._freed: asyncio.Future[None] | None = None
        self._busy = 0  # rows awaiting PUBACK
        self._idle: asyncio.Future[None] | None = None

    async def acquire(
        self,
        lane: Lane,
        preempted: Callable[[Lane], bool],
        changed: "Callable[[], asyncio.Future[None]] | None" = None,
    ) -> bool:
        """Take a slot for a row of ``lane``; False if a more urgent row arrived meanwhile."""
        if lane is Lane.TELEMETRY:
            while self._telemetry >= self._telemetry_max:
                if preempted(lane):
                    return False
                await self._next_change(changed)
            if preempted(lane):
                return False
            self._telemetry += 1
        await self._all.acquire()
        self._busy += 1
        return True

    async def idle(self) -> None:
        """Until no row awaits its PUBACK: for sending one row at a time."""
        while self._busy:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    async def _next_change(self, changed: "Callable[[], asyncio.Future[None]] | None") -> None:
        """Until a telemetry slot is freed or (with ``changed``) the store commits. Both are
        plain futures made before this yields: no task, and no wake-up falls between the
        caller's check and the wait."""
        self._freed = asyncio.get_running_loop().create_future()
        waits = [self._freed] if changed is None else [self._freed, changed()]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits:
                fut.cancel()
            self._freed = None

    def release(self, lane: Lane) -> None:
        """A row of ``lane`` got its PUBACK (or failed)."""
        self._all.release()
        self._busy -= 1
        if not self._busy and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)
        if lane is Lane.TELEMETRY:
            self._telemetry -= 1
            if self._freed is not None and not self._freed.done():
                self._freed.set_result(None)
