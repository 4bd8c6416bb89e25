"""The local alarm API: list, acknowledge and reset open alarms with the uplink down.

Used by the property staff's console and by ``cgw alarms``. Endpoints (JSON in and out):

- ``GET /v1/health`` -> ``{"ok": true}``; the only endpoint without a token.
- ``GET /v1/alarms`` -> the open alarms, oldest first, as a list of ``alarm_view`` objects.
- ``POST /v1/alarms/{id}/ack`` and ``POST /v1/alarms/{id}/reset`` with ``{"by": "<name>"}``
  (1-64 printable characters) -> ``{"alarm": <alarm_view>, "changed": <bool>}``. Acknowledging
  an alarm already acknowledged changes nothing (``changed`` false, ``acked_by`` tells who).

Contract:
- Every other request needs ``Authorization: Bearer <token>``, compared in constant time.
  A missing or wrong token is 401 and counts in ``failed_auth``. After ``MAX_FAILURES`` of
  them from one peer address within ``WINDOW`` seconds, that peer gets 429 for ``BLOCK``
  seconds whatever it sends (RELIABILITY.md S26), counted in ``throttled``.
- Errors are ``{"error": "<reason>"}``: 400 bad JSON or body, 404 no such open alarm (or
  route), 409 reset refused (the input is still active), 413 body over ``MAX_BODY`` bytes,
  503 the alarm engine has not loaded its open alarms yet.
- The token is never logged nor echoed (S12); every acknowledge and reset is logged at INFO
  with the alarm id and who did it. The access log is off: consoles poll.
- It sees the alarm engine only through ``AlarmDesk``: open alarms, acknowledge, reset and
  the response report; nothing else of the running gateway.
- aiohttp is imported only when the API starts, so a daemon without an ``api`` section never
  loads it. The token is read once, at start.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol, Self

from gateway.alarms.lifecycle import LifecycleError
from gateway.core.clock import Clock, SystemClock
from gateway.core.contract import iso
from gateway.core.errors import ConfigError

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler

    from gateway.alarms.model import Alarm, Transition
    from gateway.config.api import ApiConfig

log = logging.getLogger(__name__)
MAX_BODY = 4096  # bytes of a request body
MAX_FAILURES = 5  # failed authentications from one peer within WINDOW before it is blocked
WINDOW = 60.0  # seconds
BLOCK = 60.0  # seconds a blocked peer gets 429
READY_WAIT = 5.0  # seconds a request waits for the engine to load its open alarms
_PUBLIC = frozenset({"/v1/health"})
_MAX_PEERS = 1024  # failure histories kept before old ones are pruned (bounds memory)


class _Refused(Exception):
    """Answer the request with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def alarm_view(a: Alarm) -> dict[str, Any]:
    """What the API shows of an alarm; times are ISO 8601 UTC, like the upstream messages."""
    return {
        "id": a.id,
        "state": a.state.value,
        "severity": a.severity,
        "kind": a.kind,
        "device": a.device,
        "message": a.message,
        "latched": a.latched,
        "active": a.active,
        "raised_at": iso(a.raised_at),
        "acked_at": None if a.acked_at is None else iso(a.acked_at),
        "acked_by": a.acked_by or None,
        "time_to_ack_s": None if a.time_to_ack is None else round(a.time_to_ack, 3),
        "repeats": a.repeats,
        "escalation_step": a.tier + 1,
    }


def _reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    from aiohttp import web

    return web.json_response(payload, status=status, headers=headers)


class AlarmDesk(Protocol):
    """The API's port to the alarm engine: what staff may see and do with open alarms."""

    @property
    def ready(self) -> asyncio.Event:
        """Set once the open alarms are loaded from the store."""
        ...

    def open_alarms(self) -> list[Alarm]:
        """Open alarms, oldest first."""
        ...

    async def acknowledge(self, alarm_id: str, by: str) -> list[Transition]:
        """Acknowledge an open alarm; no transitions if it was acknowledged before."""
        ...

    async def reset(self, alarm_id: str, by: str) -> list[Transition]:
        """Clear a latched alarm; ``LifecycleError`` while its input is still active."""
        ...

    async def response_report(self, since: float) -> dict[str, Any]:
        """Response-time figures of alarms raised since ``since`` (wall clock)."""
        ...


class LocalApi:
    """The API server as an async context manager: listening inside the ``async with``."""

    def __init__(self, cfg: ApiConfig, engine: AlarmDesk, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.engine = engine
        self.clock = clock or SystemClock()
        self.failed_auth = 0  # requests refused 401 (missing or wrong token)
        self.throttled = 0  # requests refused 429 (peer blocked after too many failures)
        self._token = b""
        self._failures: dict[str, deque[float]] = {}  # peer -> monotonic times of failures
        self._blocked: dict[str, float] = {}  # peer -> monotonic time the block ends
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        try:
            from aiohttp import web  # lazily: only a daemon with an API pays for aiohttp
        except ImportError as exc:
            raise ConfigError(["api: the local API needs aiohttp (pip install aiohttp)"]) from exc

        self._token = self.cfg.read_token().encode()

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._guard(request, handler)

        app = web.Application(client_max_size=MAX_BODY, middlewares=[guard])
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/v1/alarms", self._list)
        app.router.add_get("/v1/report", self._report)
        app.router.add_post("/v1/alarms/{id}/ack", self._ack)
        app.router.add_post("/v1/alarms/{id}/reset", self._reset)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.cfg.host, self.cfg.port).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self.cfg.host}:{self.cfg.port}"
            raise ConfigError([f"api: cannot listen on {where}: {exc.strerror}"]) from exc
        self._runner = runner
        if self.cfg.allow_remote:
            log.warning("local alarm API on %s:%d, beyond loopback", self.cfg.host, self.cfg.port)
        else:
            log.info("local alarm API on %s:%d", self.cfg.host, self.cfg.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- the gate every request goes through ----------------------------------------------

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        from aiohttp import web

        try:
            if request.path not in _PUBLIC:
                self._authorize(request.remote or "unknown", request.headers.get("Authorization"))
            return await handler(request)
        except _Refused as refused:
            return _reply(refused.status, {"error": refused.message}, refused.headers)
        except web.HTTPRequestEntityTooLarge:
            return _reply(413, {"error": f"the request body is larger than {MAX_BODY} bytes"})
        except web.HTTPException as exc:  # the router's 404 and 405
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _reply(exc.status, {"error": exc.reason}, allow)

    def _authorize(self, peer: str, header: str | None) -> None:
        now = self.clock.mono()
        until = self._blocked.get(peer)
        if until is not None and now < until:
            self.throttled += 1
            raise _Refused(
                429,
                "too many failed authentications from this address; try again later",
                {"Retry-After": str(math.ceil(until - now))},
            )
        self._blocked.pop(peer, None)
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), self._token
        ):
            return
        self.failed_auth += 1
        if peer not in self._failures and len(self._failures) >= _MAX_PEERS:
            self._prune(now)
        fails = self._failures.setdefault(peer, deque())
        while fails and now - fails[0] >= WINDOW:
            fails.popleft()
        fails.append(now)
        if len(fails) >= MAX_FAILURES:
            del self._failures[peer]
            self._blocked[peer] = now + BLOCK
            log.warning(
                "local API: %d failed authentications from %s within %g s; refusing it for %g s",
                MAX_FAILURES,
                peer,
                WINDOW,
                BLOCK,
            )
        raise _Refused(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    def _prune(self, now: float) -> None:
        """Forget failure histories and blocks that no longer matter."""
        for peer in [p for p, f in self._failures.items() if not f or now - f[-1] >= WINDOW]:
            del self._failures[peer]
        for peer in [p for p, until in self._blocked.items() if now >= until]:
            del self._blocked[peer]

    # -- endpoints ------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return _reply(200, {"ok": True})

    async def _list(self, request: web.Request) -> web.Response:
        await self._ready()
        return _reply(200, [alarm_view(a) for a in self.engine.open_alarms()])

    async def _report(self, request: web.Request) -> web.Response:
        await self._ready()
        try:
            days = float(request.query.get("days", "30"))
        except ValueError:
            raise _Refused(400, "days must be a number") from None
        if not 0 < days <= 3660:
            raise _Refused(400, "days must be between 0 and 3660")
        since = self.clock.wall() - days * 86400
        return _reply(200, {"days": days, **await self.engine.response_report(since)})

    async def _ack(self, request: web.Request) -> web.Response:
        alarm_id, by = await self._operator_request(request)
        transitions = await self.engine.acknowledge(alarm_id, by)  # no await since the check
        if transitions:
            alarm, unchanged = transitions[-1].alarm, ""
        else:  # acknowledged before: the first acknowledgement stands
            (alarm,) = [a for a in self.engine.open_alarms() if a.id == alarm_id]
            unchanged = f"; already by {alarm.acked_by}, nothing changed"
        log.info(
            "alarm %s acknowledged by %s (local API)%s",
            alarm_id,
            by,
            unchanged,
            extra={"alarm": alarm_id},
        )
        return _reply(200, {"alarm": alarm_view(alarm), "changed": bool(transitions)})

    async def _reset(self, request: web.Request) -> web.Response:
        alarm_id, by = await self._operator_request(request)
        try:
            transitions = await self.engine.reset(alarm_id, by)  # no await since the check
        except LifecycleError as exc:  # the alarm exists (checked above): its input is active
            log.info("alarm %s: reset by %s refused: %s (local API)", alarm_id, by, exc)
            raise _Refused(409, str(exc)) from None
        log.info("alarm %s reset by %s (local API)", alarm_id, by, extra={"alarm": alarm_id})
        return _reply(200, {"alarm": alarm_view(transitions[-1].alarm), "changed": True})

    async def _operator_request(self, request: web.Request) -> tuple[str, str]:
        """The alarm id (of an open alarm, else 404) and the ``by`` of the body (else 400)."""
        raw = await request.read()  # over MAX_BODY: HTTPRequestEntityTooLarge, see _guard
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise _Refused(400, 'the body must be JSON like {"by": "<name>"}') from None
        if not isinstance(body, dict) or set(body) != {"by"}:
            raise _Refused(400, 'the body must be a JSON object with one key, "by"')
        by = body["by"]
        if not isinstance(by, str) or not 1 <= len(by.strip()) <= 64 or not by.isprintable():
            raise _Refused(400, '"by" must be a name of 1 to 64 printable characters')
        await self._ready()
        alarm_id = request.match_info["id"]
        if all(a.id != alarm_id for a in self.engine.open_alarms()):
            raise _Refused(404, f"no open alarm {alarm_id[:64]!r}")
        return alarm_id, by.strip()

    async def _ready(self) -> None:
        try:
            async with asyncio.timeout(READY_WAIT):
                await self.engine.ready.wait()
        except TimeoutError:
            raise _Refused(503, "the alarm engine is still starting; try again") from None
