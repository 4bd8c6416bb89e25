"""The daily reports: the previous day's availability and response reports, published once.

Contract:
- Day D (a local day in ``alarms.timezone``) is due at ``reports.publish_at`` local time on
  D+1 (midnight by default). ``run`` publishes every due day not published yet, oldest first,
  then waits for the next (looking again every ``check`` seconds, so a clock that steps is
  noticed).
- Each day is published exactly once, across restarts: its two records (``report/availability``
  and ``report/response`` in the event lane) and the day's mark (``meta.report_day``) are
  committed in one store transaction, so either both are in the outbox and the day is marked,
  or neither. From the outbox they go upstream like every event: a report that cannot be
  delivered waits there, and comes at least once (consumers dedup on the envelope's key).
- Days missed while the gateway was off are published once it runs again, after the recorder
  has recorded the restart (``Recorder.begun``), so they show the gateway's own outage. The
  first start ever publishes no day before the one it started on; at most ``retention_days``
  are caught up (older history is gone).
- A clock that steps back by more than a day (after a wrong forward jump) makes the days after
  the latest due one publishable again: they were published by a clock that was wrong.
"""

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alarms.report import Targets, response_report
from gateway.config.alarms import AlarmsConfig
from gateway.config.reports import ReportsConfig
from gateway.core.clock import Clock
from gateway.core.messages import Lane, Record
from gateway.reports.availability import midnight
from gateway.reports.service import ReportService
from gateway.store import Store, StoreFullError

log = logging.getLogger(__name__)
REPORT_DAY = "report_day"  # meta: the last local day whose reports went into the outbox
CHECK_S = 60.0
RESPONSE_KEYS = ("all", "critical", "warning", "info", "late", "late_total")


def _marked(conn: sqlite3.Connection, fallback: date) -> date:
    """The last day published; a store without one starts with ``fallback``."""
    row = conn.execute("SELECT value FROM meta WHERE key=?", (REPORT_DAY,)).fetchone()
    if row is None:
        _mark(conn, fallback)
        return fallback
    return date.fromisoformat(row[0])


def _mark(conn: sqlite3.Connection, day: date) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (REPORT_DAY, str(day)))


class DailyReports:
    """Publishes each day's reports once, the day after (see the module docstring)."""

    def __init__(
        self,
        service: ReportService,
        store: Store,
        clock: Clock,
        synced: Callable[[], bool],
        cfg: ReportsConfig,
        alarms: AlarmsConfig,
        *,
        check: float = CHECK_S,
    ) -> None:
        assert cfg.publish_at is not None, "daily reports are off"
        self.service = service
        self.store = store
        self.clock = clock
        self.synced = synced
        self.publish_at = cfg.publish_at
        self.retention = timedelta(days=cfg.retention_days)
        self.zone_name = alarms.timezone
        self.zone = ZoneInfo(alarms.timezone)
        self.targets = Targets.of(alarms)
        self.check = check
        self.checked = asyncio.Event()  # set once the first pass is over
        self._last: date | None = None  # the last day published
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due days now (the clock moved)."""
        self._wake.set()

    def latest_due(self, now: float) -> date:
        """The latest day that is due at wall time ``now``."""
        local = datetime.fromtimestamp(now, self.zone)
        return local.date() - timedelta(days=1 if local.time() >= self.publish_at else 2)

    def due_at(self, day: date) -> float:
        """Wall time at which ``day``'s reports are due."""
        return datetime.combine(day + timedelta(days=1), self.publish_at, self.zone).timestamp()

    async def run(self) -> None:
        """Publish due days, then wait for the next, until cancelled."""
        await self.service.recorder.begun.wait()
        while True:
            last = await self.publish_due()
            self.checked.set()
            wait = self.due_at(last + timedelta(days=1)) - self.clock.wall()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(self.check, wait)))
            self._wake.clear()

    async def publish_due(self) -> date:
        """Publish every due day not published yet; returns the last day published."""
        latest = self.latest_due(self.clock.wall())
        if self._last is None:
            marked = await self.store.transact(functools.partial(_marked, fallback=latest))
            if marked is None:  # a full disk deferred the transaction: retried with backoff
                raise StoreFullError("daily reports: the last day published cannot be read")
            self._last = marked
        if self._last > latest + timedelta(days=1):
            log.warning(
                "daily reports: the last day published (%s) lies ahead of the clock; days after"
                " %s will be published again as they come due",
                self._last,
                latest,
            )
            self._last = latest
            await self.store.transact(functools.partial(_mark, day=latest))
        self._last = max(self._last, latest - self.retention)
        while self._last < latest:
            day = self._last + timedelta(days=1)
            await self._publish(day)
            self._last = day
        return self._last

    async def _publish(self, day: date) -> None:
        availability = await self.service.availability(day, day, None)
        (period,) = availability["periods"]
        start = midnight(day, self.zone)
        end = midnight(day + timedelta(days=1), self.zone)
        now = self.clock.wall()
        response = await response_report(self.store, start, self.targets, until=end, now=now)
        head: dict[str, Any] = {
            "day": str(day),
            "timezone": self.zone_name,
            "from": period["from"],
            "to": period["to"],
        }
        kept = ("devices", "by_kind", "by_supplier", "all")
        uptime = head | {"restarts": availability["restarts"]} | {k: period[k] for k in kept}
        answers = head | {k: response[k] for k in RESPONSE_KEYS}
        synced = self.synced()
        records = [
            Record(Lane.EVENT, "report/availability", now, synced, fields=uptime),
            Record(Lane.EVENT, "report/response", now, synced, fields=answers),
        ]
        try:
            await self.store.transact(functools.partial(_mark, day=day), records)
        except StoreFullError as exc:  # marked; the records wait in memory for room
            log.error("daily reports of %s: %s", day, exc)
        log.info(
            "daily reports of %s published: %d devices, uptime %s%%; %d alarms, %d late",
            day,
            period["all"]["devices"],
            period["all"]["uptime_pct"],
            response["all"]["alarms"],
            response["late_total"],
        )
