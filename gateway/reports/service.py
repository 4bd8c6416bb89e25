"""Availability reports: of the running gateway, and of a stopped one from its store file.

Contract:
- ``ReportService.availability(first, last, by)`` has the recorder write what it holds (so the
  report reads up to now), reads the history of the range in one store transaction and
  computes the figures on a worker thread, so a long report holds neither the event loop nor
  the store thread beyond its reads. The zone is the community's (``alarms.timezone``) at the
  time of the call. The local API and the daily publication use it.
- ``from_file`` is the same report read from the store file, read-only, for ``cgw report``
  while the daemon is stopped. The time since the gateway was last known alive counts as its
  own outage, as its next start will record it, unless that is under two heartbeats (it is
  then taken to be running, without an API). A clock behind the history (a Pi before NTP)
  ends the report where the history ends.
- ``gateway.reports.availability`` says what the figures mean.
"""

import asyncio
import dataclasses
import functools
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.clock import Clock
from gateway.reports import history
from gateway.reports.availability import availability_report, midnight
from gateway.reports.history import Restart
from gateway.reports.recorder import HEARTBEAT_S, Recorder
from gateway.store import Store


class ReportService:
    """The local API's port to the availability history (``gateway.ops.report_api``)."""

    def __init__(
        self, store: Store, recorder: Recorder, zone: Callable[[], str], clock: Clock
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.zone = zone
        self.clock = clock

    async def availability(self, first: date, last: date, by: str | None) -> dict[str, Any]:
        """The report of local days ``first``..``last``, per ``by`` (day, month, or None)."""
        name = self.zone()
        zone = ZoneInfo(name)
        await self.recorder.flush(self.store)
        work = functools.partial(
            history.load,
            start=midnight(first, zone),
            end=midnight(last + timedelta(days=1), zone),
            first_day=str(first),
            last_day=str(last),
        )
        found = await self.store.transact(work)
        now = self.clock.wall()
        return await asyncio.to_thread(availability_report, found, name, first, last, by, now)


def from_file(
    path: Path, zone_name: str, first: date, last: date, by: str | None, now: float
) -> dict[str, Any]:
    """The report of local days ``first``..``last`` from the store file at ``path``.

    Raises ``StoreError`` when the file cannot be read or holds no availability history.
    """
    zone = ZoneInfo(zone_name)
    conn = history.open_read_only(path)
    try:
        found = history.load(
            conn,
            midnight(first, zone),
            midnight(last + timedelta(days=1), zone),
            str(first),
            str(last),
        )
    finally:
        conn.close()
    if found.alive is not None:
        now = max(now, found.alive)
        if now - found.alive > 2 * HEARTBEAT_S:  # stopped: down since, as its start will say
            gap = Restart(found.alive, now, found.stopped)
            found = dataclasses.replace(found, restarts=[*found.restarts, gap])
    return availability_report(found, zone_name, first, last, by, now)
