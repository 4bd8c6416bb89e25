"""The availability recorder: every device's online/offline changes and readings, persisted.

Contract:
- ``availability`` and ``reading`` are called by the pipeline's availability stage, on the
  loop thread; they never block and do no I/O: a change (one that differs from the device's
  last known state) and a reading count (per device and local day in ``zone``) wait in memory.
  At most ``MAX_PENDING`` changes and device-days wait; beyond, they are dropped and counted
  in ``dropped`` (a flood of made-up device ids cannot grow memory).
- ``run`` is the writer, a component of the daemon: ``begin`` first (on the first run of the
  process it records the gateway's own outage, from the last time it was known alive to now,
  see ``gateway.reports.history``), then one ``flush`` per ``heartbeat`` (60 s), and one
  ``settle`` seconds after a change, so a burst of changes costs one write. Each flush is one
  store transaction (``Store.transact``, on the store thread, never on the event loop) with
  the waiting changes, the reading counts and the "alive until" stamp. On its way out it
  flushes once more with the clean-stop mark. Once a day it purges what is older than the
  retention.
- What a crash loses: the reading counts since the last heartbeat, and changes of the last
  ``settle`` seconds; the gateway's outage then starts at the last heartbeat, so up to a
  heartbeat of downtime counts as up.
- ``flush`` may also be called by a report, so it reads what happened up to now; flushes run
  one at a time, in order.
"""

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.core.clock import Clock
from gateway.reports import history
from gateway.reports.availability import midnight
from gateway.reports.history import Change, DeviceInfo
from gateway.store import Store

log = logging.getLogger(__name__)
HEARTBEAT_S = 60.0  # how often the gateway stamps itself alive (and writes the counts)
SETTLE_S = 1.0  # a change is written this long after it came, with those that follow it
PURGE_EVERY_S = 86400.0
MAX_PENDING = 10_000


class Recorder:
    """Availability changes and reading counts on their way to the store."""

    def __init__(
        self,
        clock: Clock,
        zone: str,
        *,
        heartbeat: float = HEARTBEAT_S,
        settle: float = SETTLE_S,
    ) -> None:
        self.clock = clock
        self.heartbeat = heartbeat
        self.settle = settle
        self.dropped = 0  # changes and counts refused while MAX_PENDING waited
        self.begun = asyncio.Event()  # set once ``begin`` has recorded this start
        self._zone = ZoneInfo(zone)
        self._span = (0.0, 0.0, "")  # the local day last counted in: [start, end), its name
        self._state: dict[str, bool] = {}  # each device's last known state, this process
        self._changes: list[Change] = []
        self._counts: Counter[tuple[str, str]] = Counter()
        self._changed = asyncio.Event()
        self._writing = asyncio.Lock()
        self._restarted = True  # the next ``begin`` is this process's first
        self._next_purge = 0.0

    # -- the pipeline's side (loop thread, no I/O) ----------------------------------------

    def availability(self, device: str, online: bool, ts: float) -> None:
        """``device`` is online (or not) as of wall time ``ts``."""
        if self._state.get(device) is online:
            return
        if len(self._changes) >= MAX_PENDING:
            self.dropped += 1
            return
        self._state[device] = online
        self._changes.append((device, ts, int(online)))
        self._changed.set()

    def reading(self, device: str, ts: float) -> None:
        """One reading of ``device`` (the values of one poll or message) at wall time ``ts``."""
        key = (device, self._day(ts))
        if key not in self._counts and len(self._counts) >= MAX_PENDING:
            self.dropped += 1
            return
        self._counts[key] += 1

    def _day(self, ts: float) -> str:
        start, end, name = self._span
        if not start <= ts < end:
            day = datetime.fromtimestamp(ts, self._zone).date()
            start = midnight(day, self._zone)
            end = midnight(day + timedelta(days=1), self._zone)
            name = str(day)
            self._span = (start, end, name)
        return name

    # -- the writer --------------------------------------------------------------------------

    async def run(
        self, store: Store, devices: Sequence[DeviceInfo], zone: str, retention_days: int
    ) -> None:
        """Begin, then write every heartbeat and after changes, until cancelled."""
        self._zone, self._span = ZoneInfo(zone), (0.0, 0.0, "")
        await self.begin(store, devices)
        try:
            while True:
                if self.clock.mono() >= self._next_purge:
                    self._next_purge = self.clock.mono() + PURGE_EVERY_S
                    await self.purge(store, retention_days)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.heartbeat)
                if self._changed.is_set():
                    await asyncio.sleep(self.settle)  # the rest of a burst comes with it
                await self.flush(store)
        finally:
            await self.flush(store, clean=True)

    async def begin(self, store: Store, devices: Sequence[DeviceInfo]) -> None:
        """Record this start: the gateway's own outage (first start only), the devices."""
        configured = {d.id for d in devices}
        for device in set(self._state) - configured:  # removed: its next outcome is news
            del self._state[device]
        async with self._writing:
            work = functools.partial(
                history.begin,
                now=self.clock.wall(),
                devices=list(devices),
                restarted=self._restarted,
            )
            gap = await store.transact(work)
        if gap is not None:
            log.info(
                "availability: the gateway was down for %.0f s before this start (%s); counted"
                " as every device's outage",
                gap.up - gap.down,
                "stopped" if gap.clean else "not stopped cleanly",
            )
        self._restarted = False
        self.begun.set()

    async def flush(self, store: Store, *, clean: bool = False) -> None:
        """Write what waits, and stamp the gateway alive now (``clean``: stopping).

        Before ``begin`` it writes nothing: the stamp it would write is what ``begin`` reads to
        record the gateway's outage.
        """
        if not self.begun.is_set():
            return
        async with self._writing:
            changes, self._changes = self._changes, []
            counts, self._counts = self._counts, Counter()
            self._changed.clear()
            work = functools.partial(
                history.write, changes=changes, counts=counts, alive=self.clock.wall(), clean=clean
            )
            await store.transact(work)

    async def purge(self, store: Store, retention_days: int) -> None:
        """Forget the history older than ``retention_days`` (local days in the zone)."""
        now = self.clock.wall()
        cut_day = datetime.fromtimestamp(now, self._zone).date() - timedelta(days=retention_days)
        work = functools.partial(
            history.purge, cut=midnight(cut_day, self._zone), cut_day=str(cut_day)
        )
        async with self._writing:
            gone = await store.transact(work)
        if gone:
            log.info("availability: %d records older than %d days purged", gone, retention_days)
