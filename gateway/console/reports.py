"""The console's reports: proof of service for a period, as JSON for the page and as CSV.

Endpoints (behind ``Console._guard`` like every ``/api/`` path: a session whose role opens
the ``reports`` area, else 401 or 403):

- ``GET /api/reports?period=this_month|last_month&by=day|month`` or
  ``GET /api/reports?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|month`` -> ``{"from", "to", "by",
  "timezone", "availability", "response"}``: the availability report of those local days
  (the local API's document, ``gateway.reports.availability``) and the response report of
  the alarms raised in them (``gateway.alarms.report``). Without ``by`` the range is one
  period; without a period or dates, this month.
- ``GET /api/reports/availability.csv`` with the same query -> the CSV ``cgw report
  availability --csv`` prints (``gateway.reports.export``), as a download
  (``text/csv; charset=utf-8``, ``Content-Disposition: attachment``).
- 400 ``{"error": "<reason>"}`` for a bad period (a bad date, an end before the start, more
  than ``MAX_DAYS`` days, another ``by`` or ``period``); 501 on a console without the
  availability history (``ConsolePorts.reports`` is None).

Contract: days are the community's (``ConsolePorts.zone``): "this month" runs from its 1st
to today, "last month" is the whole calendar month before. ``resolve`` is pure (``today``
comes in); reports are read, never written, so nothing here is audited.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.reports.availability import BY, check_range, midnight
from gateway.reports.export import as_csv

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.console.ports import ConsolePorts
    from gateway.core.clock import Clock

PERIODS = ("this_month", "last_month")


class BadPeriod(ValueError):
    """A period the reports cannot be made for; the message says why."""


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadPeriod(f'"{name}" must be a date, YYYY-MM-DD') from None


def resolve(query: Mapping[str, str], today: date) -> tuple[date, date, str | None]:
    """The first and last local day and the ``by`` a report query asks for.

    Raises ``BadPeriod`` with the reason for anything else.
    """
    by = query.get("by") or None
    if by is not None and by not in BY:
        raise BadPeriod(f'"by" must be one of {", ".join(BY)} (or left out)')
    if "from" in query or "to" in query:
        first, last = _day(query.get("from", ""), "from"), _day(query.get("to", ""), "to")
    else:
        period = query.get("period") or "this_month"
        if period not in PERIODS:
            raise BadPeriod(f'"period" must be one of {", ".join(PERIODS)}, or give from and to')
        first, last = today.replace(day=1), today
        if period == "last_month":
            last = first - timedelta(days=1)
            first = last.replace(day=1)
    why = check_range(first, last)
    if why is not None:
        raise BadPeriod(why)
    return first, last, by


class ReportViews:
    """The report endpoints, added to the console's router by ``add``."""

    def __init__(self, ports: ConsolePorts, clock: Clock) -> None:
        self.ports = ports
        self.clock = clock

    def add(self, app: web.Application) -> None:
        """Register the endpoints."""
        app.router.add_get("/api/reports", self.report)
        app.router.add_get("/api/reports/availability.csv", self.csv)

    def _today(self) -> date:
        return datetime.fromtimestamp(self.clock.wall(), ZoneInfo(self.ports.zone)).date()

    async def _availability(
        self, request: web.Request
    ) -> tuple[date, date, str | None, dict[str, Any]] | web.Response:
        source = self.ports.reports
        if source is None:
            return _error(501, "this gateway keeps no availability history")
        try:
            first, last, by = resolve(request.query, self._today())
        except BadPeriod as exc:
            return _error(400, str(exc))
        return first, last, by, await source.availability(first, last, by)

    async def report(self, request: web.Request) -> web.Response:
        """The availability and response reports of the asked period."""
        from aiohttp import web

        found = await self._availability(request)
        if isinstance(found, web.Response):
            return found
        first, last, by, doc = found
        zone = ZoneInfo(doc["timezone"])
        since, until = midnight(first, zone), midnight(last + timedelta(days=1), zone)
        response = await self.ports.desk.response_report(since, until)
        body = {
            "from": str(first),
            "to": str(last),
            "by": by,
            "timezone": doc["timezone"],
            "availability": doc,
            "response": response,
        }
        return web.json_response(body, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def csv(self, request: web.Request) -> web.Response:
        """The availability report of the asked period as the CLI's CSV, to download."""
        from aiohttp import web

        found = await self._availability(request)
        if isinstance(found, web.Response):
            return found
        first, last, by, doc = found
        name = f"availability-{first}-{last}{'-by-' + by if by else ''}.csv"
        return web.Response(
            text=as_csv(doc),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


def _error(status: int, reason: str) -> web.Response:
    from aiohttp import web

    return web.json_response({"error": reason}, status=status)
