"""The console's Welfare view: the watched households, answers and planned absences.

Endpoints (behind ``Console._guard`` like every ``/api/`` path: a session whose role opens the
``welfare`` area, else 401 or 403; every POST with the session's CSRF token, else 403):

- ``GET /api/welfare`` -> ``{"timezone", "households": [...]}``: each household as the local
  API shows it (``gateway.ops.welfare_api``: state ``watched``, ``quiet`` (a welfare check is
  open), ``absent`` or ``paused``, quiet seconds and the limit now, the last sign of life, the
  absences), with its times also as the site's local time (``local``, ``YYYY-MM-DD HH:MM``)
  and each absence's ``status``: ``planned``, ``current`` or ``ended``.
- ``POST /api/welfare/{household}/answer`` with ``{"note"}``: someone checked on the
  household; its open welfare check is acknowledged and cleared, the window restarts.
- ``POST /api/welfare/{household}/absences`` with ``{"from", "until", "note"}``: a planned
  absence; times are local in the site's zone (``YYYY-MM-DDTHH:MM``, what the page's date
  and time fields give) unless they carry an offset.
- ``POST /api/welfare/absences/{id}/cancel``: back early; the window restarts now.
- Each POST answers ``{"done": "<what happened>", "households": [...]}`` (the view anew).
- Errors are ``{"error": "<reason>"}``: 400 a bad body, 404 an unknown household or absence,
  501 welfare checks not configured (``ConsolePorts.welfare`` is None), 503 while the
  monitor starts.

Contract: the view reads and acts only through ``ConsolePorts.welfare``, the ``WelfareDesk``
of the local API, as the signed-in person (their display name is the ``by``). Every action is
audited in their name (``audit``: the log line and the ``audit`` record upstream) with the
household and what was done, never the note: notes may be personal, and go only where the
local API puts them (the absence, the alarm's clearing).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from gateway.ops.replies import Refused, json_object
from gateway.ops.welfare_api import WelfareDesk, at_time, valid_note
from gateway.welfare.monitor import WelfareError

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.console.ports import ConsolePorts
    from gateway.core.clock import Clock

Who = Callable[["web.Request"], str]  # the signed-in person's name, as audits give it
# request, action, target, outcome, detail: logged and published upstream
Audit = Callable[["web.Request", str, str, str, str], None]
ABSENCE = '{"from": "2026-12-20T08:00", "until": "2026-12-24T18:00", "note": "..."}'


class WelfareViews:
    """The welfare endpoints, added to the console's router by ``add``."""

    def __init__(self, ports: ConsolePorts, clock: Clock, who: Who, audit: Audit) -> None:
        self.ports, self.clock, self.who, self.audit = ports, clock, who, audit

    def add(self, app: web.Application) -> None:
        """Register the endpoints."""
        r = app.router
        r.add_get("/api/welfare", self.households)
        r.add_post("/api/welfare/{household}/answer", self.answer)
        r.add_post("/api/welfare/{household}/absences", self.absence)
        r.add_post("/api/welfare/absences/{id}/cancel", self.cancel)

    async def households(self, request: web.Request) -> web.Response:
        """Every watched household, with local times."""
        try:
            desk = self._desk()
        except Refused as exc:
            return _error(exc.status, exc.message)
        return _json({"timezone": self.ports.zone, "households": self._view(desk)})

    async def answer(self, request: web.Request) -> web.Response:
        """Someone checked on the household: acknowledge and clear its check."""
        household = request.match_info["household"][:64]
        try:
            body = json_object(await request.read(), {"note"}, '{"note": "..."}')
            note, desk = valid_note(body.get("note")), self._desk()
            was_open = await desk.answer(household, self.who(request), note)
        except Refused as exc:
            return _error(exc.status, exc.message)
        except WelfareError as exc:
            return _error(404, str(exc))
        done = "its welfare check cleared" if was_open else "no check was open"
        self.audit(request, "welfare-answer", household, "executed", done)
        return _json({"done": done, "households": self._view(desk)})

    async def absence(self, request: web.Request) -> web.Response:
        """A planned absence of the household."""
        household = request.match_info["household"][:64]
        zone = ZoneInfo(self.ports.zone)
        try:
            body = json_object(await request.read(), {"from", "until", "note"}, ABSENCE)
            note = valid_note(body.get("note"))
            start = at_time(body.get("from"), "from", zone)
            end = at_time(body.get("until"), "until", zone)
            desk = self._desk()
            if household not in {h["household"] for h in desk.view()}:
                return _error(404, f"no watched household {household!r}")
            absence = await desk.plan_absence(household, start, end, note, self.who(request))
        except Refused as exc:
            return _error(exc.status, exc.message)
        except WelfareError as exc:
            self.audit(request, "welfare-away", household, "rejected", str(exc))
            return _error(400, str(exc))
        done = f"absence {absence.id} from {_local(start, zone)} until {_local(end, zone)}"
        self.audit(request, "welfare-away", household, "executed", done)
        return _json({"done": done, "households": self._view(desk)})

    async def cancel(self, request: web.Request) -> web.Response:
        """Back early: forget a planned absence."""
        text = request.match_info["id"][:32]
        try:
            desk = self._desk()
            absence = await desk.cancel_absence(int(text), self.who(request))
        except Refused as exc:
            return _error(exc.status, exc.message)
        except (ValueError, WelfareError):
            return _error(404, f"no planned absence {text!r}")
        done = f"absence {absence.id} cancelled: back early"
        self.audit(request, "welfare-back", absence.household, "executed", done)
        return _json({"done": done, "households": self._view(desk)})

    def _desk(self) -> WelfareDesk:
        running = self.ports.welfare
        if running is None:
            raise Refused(501, "welfare checks are not configured on this gateway")
        desk = running()
        if desk is None or not desk.ready.is_set():
            raise Refused(503, "the welfare monitor is starting; try again in a moment")
        return desk

    def _view(self, desk: WelfareDesk) -> list[dict[str, Any]]:
        zone, now = ZoneInfo(self.ports.zone), self.clock.wall()
        out = desk.view()
        for h in out:
            if h["last_sign"] is not None:
                h["last_sign"]["local"] = _local(_wall(h["last_sign"]["at"]), zone)
            for a in h["absences"]:
                start, end = _wall(a["from"]), _wall(a["until"])
                a["from_local"], a["until_local"] = _local(start, zone), _local(end, zone)
                a["status"] = "ended" if end <= now else "current" if start <= now else "planned"
        return out


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _local(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M")


def _json(payload: Any, status: int = 200) -> web.Response:
    from aiohttp import web

    return web.json_response(
        payload, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)
