"""Availability reports of the running gateway, for the local API and the daily publication.

Contract: ``availability(first, last, by)`` has the recorder write what it holds (so the report
reads up to now), reads the history of the range in one store transaction and computes the
figures on a worker thread, so a long report holds neither the event loop nor the store
thread beyond its reads. ``gateway.reports.availability`` says what the figures mean; the
zone is the community's (``alarms.timezone``) at the time of the call.
"""

import asyncio
import functools
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.clock import Clock
from gateway.reports import history
from gateway.reports.availability import availability_report, midnight
from gateway.reports.recorder import Recorder
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
