"""The field console's web server: sign-in, the page, its JSON, its live stream, its actions.

Contract:
- Served with aiohttp inside ``async with Console(cfg, ports)``, behind a ``ConnectionGate``
  like the API and the monitor; HTTPS when ``tls_cert`` is set. aiohttp and argon2 are
  imported only when the console starts.
- Every page and endpoint but ``/login`` and ``/static/*`` needs a session cookie
  (``cgw_session``: HttpOnly, SameSite=Strict, Secure over TLS). Without one a page
  redirects to ``/login`` and an ``/api/`` call answers 401. A role that may not see an area
  gets 403 (``gateway.console.users.allowed``): a guard sees duty, status and welfare only,
  not the devices, commissioning or reports.
- Every POST but ``/login`` carries the session's CSRF token in ``X-CSRF-Token``; a POST
  without it, or with another, is refused 403 and changes nothing. The sign-in form carries a
  token of its own, matched against a cookie set with the form.
- Failed sign-ins are slowed per account (``LoginThrottle``): the right password is always
  answered at once, whoever else is guessing.
- The users file is looked at (its mtime) at most once a second; a changed file is re-read,
  and the sessions of removed accounts or changed passwords end at once.
- Every action (acknowledge, reset, read, scan, a welfare answer or absence, sign-in,
  sign-out) is logged with the person's
  name and published upstream on ``audit`` (``ports.audit``).
- The language is the one the person picked with the page's language button (a
  ``cgw_lang`` cookie: a preference, not a secret), else ``language`` of the config, else
  the browser's ``Accept-Language``.
- Responses carry a strict Content-Security-Policy (scripts and styles from the console
  only: it works with the internet down and loads nothing from elsewhere) and no-store
  caching for everything but the static files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
from typing import TYPE_CHECKING, Any, Self

from gateway.console.live import Hub
from gateway.console.pages import STATIC, login_page
from gateway.console.ports import ConsolePorts
from gateway.console.routes import COOKIE, LOGIN_COOKIE, SESSION, SID, Routes, person
from gateway.console.sessions import LoginThrottle, Session, Sessions, check_csrf
from gateway.console.users import Users, allowed
from gateway.core.catalogue import LANGUAGES, Language, negotiate
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError
from gateway.core.snapshots import ConsoleSnapshot
from gateway.transport.listener import ConnectionGate, connection_cap, serve

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler

    from gateway.config.console import ConsoleConfig

log = logging.getLogger(__name__)
MAX_BODY = 8192
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
AREAS = {  # path prefix -> area of gateway.console.users.allowed
    "/api/duty": "duty",
    "/api/alarms": "duty",
    "/api/devices": "devices",
    "/api/buses": "commission",
    "/api/status": "status",
    "/api/reports": "reports",
    "/api/welfare": "welfare",
}
PUBLIC = ("/login", "/static/", "/favicon.ico")
LANG_COOKIE = "cgw_lang"  # the language a person picked on the page (set by its script)


class Console:
    """The console server as an async context manager: listening inside the ``async with``."""

    def __init__(self, cfg: ConsoleConfig, ports: ConsolePorts, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.ports = ports
        self.clock = clock or SystemClock()
        self.users = Users.load(cfg.users_file)
        self.sessions = Sessions(self.clock, idle=cfg.session_idle)
        self.throttle = LoginThrottle(self.clock)
        self.hub = Hub(ports, self.clock)
        self.routes = Routes(self)
        self.gate = ConnectionGate(
            "console", connection_cap(cfg.max_connections), cfg.header_timeout
        )
        self._runner: web.AppRunner | None = None
        self._hub_task: asyncio.Task[None] | None = None
        self._users_looked = self.clock.mono()
        self.cert_ends: float | None = None  # when the HTTPS certificate runs out (wall time)

    async def __aenter__(self) -> Self:
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guard(request, handler)

        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.gate.middleware, guard])
        self.routes.add(app)
        tls = None
        if self.cfg.tls_cert is not None and self.cfg.tls_key is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
            from gateway.console.certificate import not_after

            self.cert_ends = not_after(self.cfg.tls_cert)  # it loaded: it parses
        self._hub_task = asyncio.create_task(self.hub.run(), name="console:hub")
        try:
            self._runner = await serve(app, "console", self.cfg.host, self.cfg.port, self.gate,
                                       idle_timeout=self.cfg.idle_timeout, shutdown_timeout=1.0,
                                       tls=tls)  # fmt: skip
        except BaseException:
            await self._stop_hub()
            raise
        if not self.users.names():
            log.warning(
                "console: no accounts in %s; add one with 'cgw users add <name> --role admin'",
                self.cfg.users_file,
            )
        log.info("field console on %s (%d accounts)", self.cfg.url, len(self.users.names()))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            for sub in list(self.hub.subscribers):  # end the open streams first
                self.hub.unsubscribe(sub)
                sub.queue.put_nowait(None)
            await runner.cleanup()
        await self._stop_hub()

    async def _stop_hub(self) -> None:
        if self._hub_task is not None:
            task, self._hub_task = self._hub_task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def snapshot(self) -> ConsoleSnapshot:
        """The console's figures, for health and metrics."""
        throttle = self.throttle
        left = None if self.cert_ends is None else (self.cert_ends - self.clock.wall()) / 86400
        return ConsoleSnapshot(
            len(self.sessions), len(self.hub.subscribers), self.hub.dropped,
            throttle.logins_ok, throttle.logins_failed, throttle.throttled,
            self.cert_ends, left,
        )  # fmt: skip

    # -- people ---------------------------------------------------------------------------

    def language(self, request: web.Request) -> Language:
        """The console's language for this request: the one the person picked on the page
        (the ``cgw_lang`` cookie), else the config's, else the browser's."""
        picked = request.cookies.get(LANG_COOKIE, "")
        for language in LANGUAGES:
            if picked == language:
                return language
        if self.cfg.language != "auto":
            return self.cfg.language
        return negotiate(request.headers.get("Accept-Language", ""))

    def session(self, request: web.Request) -> Session | None:
        """The request's session, if it has a live one."""
        sid = request.cookies.get(COOKIE)
        return self.alive(sid) if sid else None

    def alive(self, sid: str) -> Session | None:
        """The session ``sid`` if it goes on: the accounts file is looked at first, so a
        removed account or a new password ends it at once (an open stream too)."""
        self._reload_users()
        return self.sessions.get(sid)

    def _reload_users(self) -> None:
        if self.clock.mono() - self._users_looked < 1.0:
            return
        self._users_looked = self.clock.mono()
        if not self.users.stale(self.cfg.users_file):
            return
        try:
            fresh = Users.load(self.cfg.users_file)
        except ConfigError as exc:  # a half-edited file: keep the accounts we have
            log.warning("console: cannot re-read %s: %s", self.cfg.users_file, exc)
            return
        for name in fresh.differs(self.users):  # removed, new password or new role
            self.sessions.drop_user(name)
        self.users = fresh
        log.info("console: accounts re-read from %s", self.cfg.users_file)

    def audit(
        self, session: Session | None, action: str, target: str, outcome: str, detail: str = ""
    ) -> None:
        """Log an action and publish it upstream on ``audit``."""
        who = person(session) if session is not None else "-"
        log.info(
            "console: %s %s by %s: %s%s",
            action,
            target or "-",
            who,
            outcome,
            f" ({detail})" if detail else "",
            extra={"action": action, "by": who},
        )
        fields: dict[str, Any] = {
            "kind": "console",
            "command_id": None,
            "name": action,
            "outcome": outcome,
            "detail": detail[:300],
            "authenticated": session is not None,
            "target": target[:128],
        }
        if session is not None:
            fields |= {"by": person(session), "account": session.name, "role": session.role}
        self.ports.audit(action, target, fields)

    # -- the gate every request goes through ----------------------------------------------

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        from aiohttp import web

        path = request.path
        try:
            if path.startswith(PUBLIC):
                response = await handler(request)
            else:
                session = self.session(request)
                if session is None:
                    if path.startswith("/api/"):
                        raise _refused(web.HTTPUnauthorized, "sign in first")
                    raise web.HTTPSeeOther("/login")
                area = next((a for p, a in AREAS.items() if path.startswith(p)), None)
                if area is not None and not allowed(session.role, area):
                    raise web.HTTPForbidden(
                        text='{"error": "not open to your account"}',
                        content_type="application/json",
                    )
                if request.method == "POST" and not check_csrf(
                    session, request.headers.get("X-CSRF-Token", "")
                ):
                    self.audit(session, "csrf", path, "rejected", "a POST without its CSRF token")
                    raise web.HTTPForbidden(
                        text='{"error": "missing or wrong CSRF token"}',
                        content_type="application/json",
                    )
                request[SESSION] = session
                request[SID] = request.cookies[COOKIE]
                response = await handler(request)
        except web.HTTPException as exc:
            _harden(exc, path)
            raise
        _harden(response, path)
        if isinstance(response, web.HTTPException):  # a redirect that sets a cookie
            raise response  # aiohttp deprecates returning one (aiohttp#2415)
        return response

    def new_login_token(self) -> str:
        return secrets.token_urlsafe(24)

    def login_page(self, request: web.Request, error: str = "", status: int = 200) -> web.Response:
        from aiohttp import web

        token = self.new_login_token()
        html = login_page(self.language(request), self.ports.site, token, error)
        response = web.Response(text=html, content_type="text/html", status=status)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict",
                            secure=self.cfg.tls, path="/login", max_age=3600)  # fmt: skip
        return response


def _refused(kind: type[web.HTTPException], reason: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": reason}), content_type="application/json")


def _harden(response: web.StreamResponse, path: str) -> None:
    if response.prepared:  # a stream sets its own headers before it starts
        return
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if not path.startswith("/static/"):
        headers.setdefault("Cache-Control", "no-store")


__all__ = ["COOKIE", "LOGIN_COOKIE", "STATIC", "Console"]
