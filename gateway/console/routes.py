"""The console's endpoints: the page, sign-in and out, JSON for each area, the live stream.

Contract (every path is behind ``Console._guard``: session, role and CSRF are checked there):
- ``GET /`` the page; ``GET /static/<file>`` its script and style; ``GET|POST /login``;
  ``POST /logout``.
- ``GET /api/me``: who is signed in, their CSRF token, role, areas, language and the phrases
  of the catalogue in that language (the page holds no words of its own).
- ``GET /api/duty``, ``GET /api/devices``, ``GET /api/devices/{id}``, ``GET /api/status``:
  the views of ``gateway.console.views``; ``GET /api/events``: the live stream (``Hub``).
- ``POST /api/alarms/{id}/ack|reset``: as the signed-in person (their display name is the
  ``by`` that goes upstream). 404 no such open alarm, 409 reset refused (input still active).
- ``GET /api/reports`` and ``GET /api/reports/availability.csv``: the availability and
  response reports of a period (``gateway.console.reports``).
- ``/api/welfare`` and its POSTs: the Welfare view (``gateway.console.welfare``), as the
  signed-in person, audited like an acknowledgement.
- ``POST /api/devices/{id}/read`` and ``POST /api/buses/{bus}/scan`` (``{"units": "1-16"}``)
  go to the ``Commissioner`` (501 when the gateway has none). A scan never writes.
- Errors are ``{"error": "<reason>"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web  # this module loads with the console only (gateway.console.server)

from gateway.alarms.lifecycle import LifecycleError
from gateway.console.pages import STATIC, index_page
from gateway.console.reports import ReportViews
from gateway.console.sessions import Session, TooManyAttempts
from gateway.console.users import UserError, allowed
from gateway.console.views import devices_view
from gateway.console.welfare import WelfareViews
from gateway.core.catalogue import phrases
from gateway.core.commission import SCAN_TIMEOUT, NotFound, NotReadable, parse_units
from gateway.core.errors import TransientError
from gateway.ops.device_api import SCAN_LIMIT
from gateway.ops.device_view import read_view, scan_view

if TYPE_CHECKING:
    from gateway.config.console import ConsoleConfig
    from gateway.console.live import Hub
    from gateway.console.ports import ConsolePorts
    from gateway.console.sessions import LoginThrottle, Sessions
    from gateway.console.users import Users
    from gateway.core.catalogue import Language
    from gateway.core.clock import Clock

log = logging.getLogger(__name__)
COOKIE = "cgw_session"
LOGIN_COOKIE = "cgw_login"  # the sign-in form's own CSRF token
AREA_NAMES = ("duty", "devices", "commission", "status", "reports", "welfare", "users")
PING = 10.0  # seconds between two keep-alive comments on a live stream
# seconds a unit id has to answer a scan from the page: more than the CLI's default, since a
# phone scans a few ids while the bus is polled, and a slow sensor missed is a wrong answer
CONSOLE_SCAN_TIMEOUT = max(SCAN_TIMEOUT, 0.3)
SESSION = web.RequestKey("session", Session)  # set by the guard on every signed-in request
SID = web.RequestKey("sid", str)  # the session's id (its cookie)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(
        payload, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


class Host(Protocol):
    """What the endpoints use of the console that serves them (``gateway.console.server``)."""

    cfg: ConsoleConfig
    ports: ConsolePorts
    clock: Clock
    hub: Hub
    users: Users
    sessions: Sessions
    throttle: LoginThrottle

    def language(self, request: web.Request) -> Language: ...

    def session(self, request: web.Request) -> Session | None: ...

    def alive(self, sid: str) -> Session | None: ...

    def login_page(
        self, request: web.Request, error: str = "", status: int = 200
    ) -> web.Response: ...

    def audit(
        self, session: Session | None, action: str, target: str, outcome: str, detail: str = ""
    ) -> None: ...


def person(session: Session) -> str:
    """Who is signed in, as audits and alarms name them: their name, else the account."""
    return (session.display or session.name)[:64]


class Routes:
    """The handlers, bound to one ``Console``."""

    def __init__(self, console: Host) -> None:
        self.c = console
        self.scanning: set[str] = set()  # buses a scan runs on now

    def add(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/static/{name}", self.static)
        r.add_get("/favicon.ico", self.favicon)
        r.add_get("/login", self.login_form)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/api/me", self.me)
        r.add_get("/api/duty", self.duty)
        r.add_post("/api/alarms/{id}/ack", self.ack)
        r.add_post("/api/alarms/{id}/reset", self.reset)
        r.add_get("/api/devices", self.devices)
        r.add_get("/api/devices/{id}", self.device)
        r.add_post("/api/devices/{id}/read", self.read)
        r.add_post("/api/buses/{bus}/scan", self.scan)
        r.add_get("/api/status", self.status)
        r.add_get("/api/events", self.events)
        ReportViews(self.c.ports, self.c.clock).add(app)
        WelfareViews(self.c.ports, self.c.clock, self._who, self._audit).add(app)

    def _who(self, request: web.Request) -> str:
        return person(request[SESSION])

    def _audit(
        self, request: web.Request, action: str, target: str, outcome: str, detail: str
    ) -> None:
        self.c.audit(request[SESSION], action, target, outcome, detail)

    # -- pages ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=index_page(self.c.language(request)), content_type="text/html")

    async def static(self, request: web.Request) -> web.Response:
        found = STATIC.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        body, kind = found
        return web.Response(body=body, content_type=kind, headers={"Cache-Control": "max-age=300"})

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self.c.session(request) is not None:
            raise web.HTTPSeeOther("/")
        return self.c.login_page(request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name = str(form.get("name", "")).strip()[:64]
        password = str(form.get("password", ""))[:1024]
        token = str(form.get("token", ""))
        language = self.c.language(request)
        said = phrases(language, "console.login.")
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not token or not hmac.compare_digest(token.encode(), cookie.encode()):
            self.c.audit(None, "sign-in", name, "rejected", "a sign-in without its form token")
            return self.c.login_page(request, said["expired"], 403)
        users = self.c.users
        try:
            user = await self.c.throttle.check(name, lambda: users.averify(name, password))
        except TooManyAttempts:
            self.c.audit(None, "sign-in", name, "rejected", "too many attempts")
            return self.c.login_page(request, said["throttled"], 429)
        if user is None:
            self.c.audit(None, "sign-in", name, "rejected", "wrong account or password")
            return self.c.login_page(request, said["failed"], 401)
        if users.needs_save:  # an older hash was upgraded by this sign-in
            try:
                await asyncio.to_thread(users.save, self.c.cfg.users_file)
            except (UserError, OSError) as exc:  # kept in memory; saved at the next sign-in
                log.warning("console: cannot save the upgraded hash of %s: %s", name, exc)
        sid, session = self.c.sessions.create(user)
        self.c.audit(session, "sign-in", name, "executed")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict",
                            secure=self.c.cfg.tls, path="/")  # fmt: skip
        response.del_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION]
        self.c.sessions.drop(request[SID])
        self.c.audit(session, "sign-out", session.name, "executed")
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        return response

    # -- JSON -----------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.Response:
        session = request[SESSION]
        language = self.c.language(request)
        return _json(
            {
                "name": session.name,
                "display": person(session),
                "role": session.role,
                "csrf": session.csrf,
                "areas": [a for a in AREA_NAMES if allowed(session.role, a)],
                "language": language,
                "site": self.c.ports.site,
                "phrases": phrases(language, "console.")
                | {f"severity.{k}": v for k, v in phrases(language, "severity.").items()},
                "commission": self.c.ports.commissioner is not None,
                "buses": self.c.ports.bus_names if self.c.ports.commissioner else [],
                "welfare": self.c.ports.welfare is not None,
            }
        )

    async def duty(self, request: web.Request) -> web.Response:
        return _json(self.c.hub.duty())

    async def ack(self, request: web.Request) -> web.Response:
        return await self._act(request, "acknowledge")

    async def reset(self, request: web.Request) -> web.Response:
        return await self._act(request, "reset")

    async def _act(self, request: web.Request, action: str) -> web.Response:
        session = request[SESSION]
        desk = self.c.ports.desk
        alarm_id = request.match_info["id"][:64]
        if not desk.ready.is_set() or all(a.id != alarm_id for a in desk.open_alarms()):
            return _error(404, f"no open alarm {alarm_id!r}")
        try:
            if action == "acknowledge":
                changed = bool(await desk.acknowledge(alarm_id, person(session)))
            else:
                changed = bool(await desk.reset(alarm_id, person(session)))
        except LifecycleError as exc:
            self.c.audit(session, action, alarm_id, "rejected", str(exc))
            return _error(409, str(exc))
        self.c.audit(session, action, alarm_id, "executed" if changed else "duplicate")
        return _json({"changed": changed, **self.c.hub.duty()})

    async def devices(self, request: web.Request) -> web.Response:
        now = self.c.clock.wall()
        states = self.c.ports.devices.snapshot()
        return _json({"devices": devices_view(states, now)})

    async def device(self, request: web.Request) -> web.Response:
        device = request.match_info["id"]
        state = self.c.ports.devices.snapshot().get(device)
        if state is None:
            return _error(404, f"no device {device[:64]!r}")
        (view,) = self.c.hub.device_views({device: state})
        history = [{"ts": ts, "online": on} for ts, on in self.c.hub.history.get(device, ())]
        return _json(view | {"history": history})

    async def read(self, request: web.Request) -> web.Response:
        session = request[SESSION]
        device = request.match_info["id"][:64]
        commissioner = self.c.ports.commissioner
        if commissioner is None:
            return _error(501, "this gateway has no bus to read from")
        try:
            read = await commissioner.read(device)
        except (NotFound, NotReadable, TransientError) as exc:
            self.c.audit(session, "read", device, "failed", str(exc))
            return _error(404 if isinstance(exc, NotFound) else 409, str(exc))
        self.c.audit(session, "read", device, "executed")
        return _json(read_view(read, raw=True))

    async def scan(self, request: web.Request) -> web.Response:
        session = request[SESSION]
        bus = request.match_info["bus"][:64]
        commissioner = self.c.ports.commissioner
        if commissioner is None or bus not in self.c.ports.bus_names:
            return _error(404, f"no bus {bus!r} to scan")
        try:
            body = await request.json()
            wanted = parse_units(str(body.get("units", "1-247")) if isinstance(body, dict) else "")
        except ValueError as exc:
            return _error(400, str(exc))
        if bus in self.scanning:
            return _error(409, f"a scan of {bus} runs already")
        self.scanning.add(bus)
        try:
            report = await commissioner.scan(bus, wanted, CONSOLE_SCAN_TIMEOUT, SCAN_LIMIT)
        except (NotFound, NotReadable, TransientError) as exc:
            self.c.audit(session, "scan", bus, "failed", str(exc))
            return _error(409, str(exc))
        finally:
            self.scanning.discard(bus)
        self.c.audit(session, "scan", bus, "executed", f"units {wanted[0]}-{wanted[-1]}")
        return _json(scan_view(report))

    async def status(self, request: web.Request) -> web.Response:
        return _json(self.c.hub.status())

    # -- the live stream ------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION]  # its stream ends when it does
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        sub = self.c.hub.subscribe(allowed(session.role, "devices"))
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    async with asyncio.timeout(PING):
                        event = await sub.queue.get()
                except TimeoutError:
                    event = "event: ping\ndata: {}\n\n"  # the page's watchdog counts these
                if event is None or self.c.alive(request[SID]) is None:
                    break  # dropped for falling behind, or signed out: the page reconnects
                await response.write(event.encode())
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.c.hub.unsubscribe(sub)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response
