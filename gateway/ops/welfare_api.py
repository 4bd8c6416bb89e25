"""The local API's welfare routes: the watched households, answers and planned absences.

Endpoints (bearer token as for every route of ``gateway.ops.api``; JSON in and out):

- ``GET /v1/welfare`` -> ``{"households": [...]}``: each watched household's state
  (``watched``, ``quiet``: a welfare check is open, ``absent``, ``paused``: a source is
  offline), quiet seconds counted and the limit now, its last sign of life, its absences.
- ``POST /v1/welfare/{household}/answer`` with ``{"by": "<name>", "note": "<text>"}``:
  someone checked on the household (visited, reached by phone, away from home...): its open
  welfare check is acknowledged and cleared, and its window restarts. -> ``{"household",
  "was_open"}``.
- ``POST /v1/welfare/{household}/absences`` with ``{"by", "from", "until", "note"}`` (times
  ISO 8601 with an offset) -> the absence with its ``id``. No welfare check meanwhile; the
  window restarts when it ends.
- ``POST /v1/welfare/absences/{id}/cancel`` with ``{"by": "<name>"}``: back early.

Errors: 400 bad body, 404 unknown household or absence (or no ``welfare`` section), 503 while
the monitor is starting. Notes are 1 to 200 printable characters; they may be personal and are
kept no longer than the absence's retention (docs/welfare.md). ``valid_note`` and ``at_time``
check a body's note and times for the field console's welfare view too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

from gateway.ops.replies import Refused, json_object, operator, reply
from gateway.welfare.monitor import WelfareError

if TYPE_CHECKING:
    import asyncio

    from aiohttp import web

    from gateway.welfare.watch import Absence

NOTE_MAX = 200


class WelfareDesk(Protocol):
    """The routes' port to the welfare monitor (``gateway.welfare.monitor``)."""

    @property
    def ready(self) -> asyncio.Event: ...
    def view(self) -> list[dict[str, Any]]: ...
    async def answer(self, household: str, by: str, note: str) -> bool: ...
    async def plan_absence(
        self, household: str, start: float, end: float, note: str, by: str
    ) -> Absence: ...
    async def cancel_absence(self, absence_id: int, by: str) -> Absence: ...


class WelfareRoutes:
    """The welfare endpoints; ``desk()`` is the monitor running now, or None."""

    def __init__(self, desk: Callable[[], WelfareDesk | None]) -> None:
        self.desk = desk

    def add_to(self, router: web.UrlDispatcher) -> None:
        """Register the endpoints."""
        router.add_get("/v1/welfare", self._list)
        router.add_post("/v1/welfare/{household}/answer", self._answer)
        router.add_post("/v1/welfare/{household}/absences", self._absence)
        router.add_post("/v1/welfare/absences/{id}/cancel", self._cancel)

    def _running(self) -> WelfareDesk:
        desk = self.desk()
        if desk is None:
            raise Refused(404, "welfare checks are not configured")
        if not desk.ready.is_set():
            raise Refused(503, "the welfare monitor is still starting; try again")
        return desk

    async def _list(self, request: web.Request) -> web.Response:
        return reply(200, {"households": self._running().view()})

    async def _answer(self, request: web.Request) -> web.Response:
        body = json_object(await request.read(), {"by", "note"}, '{"by": "...", "note": "..."}')
        by, note = operator(body.get("by")), valid_note(body.get("note"))
        household = request.match_info["household"]
        try:
            was_open = await self._running().answer(household, by, note)
        except WelfareError as exc:
            raise Refused(404, str(exc)) from None
        return reply(200, {"household": household, "was_open": was_open})

    async def _absence(self, request: web.Request) -> web.Response:
        example = '{"by": "...", "from": "2026-12-20T08:00+08:00", "until": "...", "note": "..."}'
        body = json_object(await request.read(), {"by", "from", "until", "note"}, example)
        by, note = operator(body.get("by")), valid_note(body.get("note"))
        start, end = at_time(body.get("from"), "from"), at_time(body.get("until"), "until")
        household = request.match_info["household"]
        desk = self._running()
        if household not in {h["household"] for h in desk.view()}:
            raise Refused(404, f"no watched household {household[:64]!r}")
        try:
            a = await desk.plan_absence(household, start, end, note, by)
        except WelfareError as exc:
            raise Refused(400, str(exc)) from None
        return reply(200, _absence_view(a))

    async def _cancel(self, request: web.Request) -> web.Response:
        body = json_object(await request.read(), {"by"}, '{"by": "<name>"}')
        by = operator(body.get("by"))
        try:
            absence_id = int(request.match_info["id"])
            a = await self._running().cancel_absence(absence_id, by)
        except (ValueError, WelfareError):
            raise Refused(404, f"no planned absence {request.match_info['id'][:32]!r}") from None
        return reply(200, _absence_view(a))


def _absence_view(a: Absence) -> dict[str, Any]:
    return {"id": a.id, "household": a.household, "from": a.start, "until": a.end,
            "note": a.note, "by": a.by}  # fmt: skip


def valid_note(note: object) -> str:
    """``note`` without surrounding blanks; 400 unless it is 1 to ``NOTE_MAX`` printable
    characters. The reason never repeats the note (it may be personal)."""
    if not isinstance(note, str) or not 1 <= len(note.strip()) <= NOTE_MAX:
        raise Refused(400, f'"note" must be text of 1 to {NOTE_MAX} characters')
    if not note.isprintable():
        raise Refused(400, '"note" must be printable text')
    return note.strip()


def at_time(text: object, name: str, zone: tzinfo | None = None) -> float:
    """The wall time of ``text``, an ISO 8601 time; 400 naming ``name`` otherwise.

    Without ``zone`` it must carry an offset; with one, a time without an offset (what a
    page's date and time fields give) is local time in ``zone``.
    """
    try:
        when = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        when = None
    if when is not None and when.tzinfo is None and zone is not None:
        when = when.replace(tzinfo=zone)
    if when is None or when.tzinfo is None:
        rule = "with an offset" if zone is None else "(YYYY-MM-DDTHH:MM)"
        raise Refused(400, f'"{name}" must be an ISO 8601 time {rule}')
    return when.timestamp()
