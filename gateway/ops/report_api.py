"""The local API's report routes: availability per device, for proof of service.

Endpoint (bearer token as for every route of ``gateway.ops.api``; JSON out):

- ``GET /v1/reports/availability?from=YYYY-MM-DD&to=YYYY-MM-DD&by=day|month`` -> the
  availability report of those local days (both included, at most ``MAX_DAYS``) in the
  community's zone: per period (each day, each month, or without ``by`` the whole range) every
  device's uptime, outages, downtime and completeness, grouped by kind and by supplier
  (``gateway.reports.availability`` says what each figure means). 400 for a missing or bad
  date, a range that ends before it starts or is too long, or another ``by``.

Contract: the route sees the gateway only through ``AvailabilitySource`` (the running
gateway's report service, which writes what its recorder holds before it reads).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from gateway.ops.replies import Refused, reply
from gateway.reports.availability import BY, check_range

if TYPE_CHECKING:
    from aiohttp import web


class AvailabilitySource(Protocol):
    """The route's port to the availability history (``gateway.reports.service``)."""

    async def availability(self, first: date, last: date, by: str | None) -> dict[str, Any]:
        """The report of local days ``first``..``last`` per ``by`` (day, month or None)."""
        ...


class ReportRoutes:
    """The report endpoints, added to the API's router by ``add_to``."""

    def __init__(self, source: AvailabilitySource) -> None:
        self.source = source

    def add_to(self, router: web.UrlDispatcher) -> None:
        """Register the endpoints."""
        router.add_get("/v1/reports/availability", self._availability)

    async def _availability(self, request: web.Request) -> web.Response:
        first, last = _day(request.query.get("from"), "from"), _day(request.query.get("to"), "to")
        why = check_range(first, last)
        if why is not None:
            raise Refused(400, why)
        by = request.query.get("by") or None
        if by is not None and by not in BY:
            raise Refused(400, f'"by" must be one of {", ".join(BY)} (or left out)')
        return reply(200, await self.source.availability(first, last, by))


def _day(text: str | None, name: str) -> date:
    try:
        return date.fromisoformat(text or "")
    except ValueError:
        raise Refused(400, f'"{name}" must be a date, YYYY-MM-DD') from None
