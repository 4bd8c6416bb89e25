"""The local API: open alarms with the uplink down, the devices (``gateway.ops.device_api``),
the availability report (``gateway.ops.report_api``) and the welfare checks
(``gateway.ops.welfare_api``).

Used by the property staff's console, ``cgw alarms``, ``cgw report``, ``cgw devices``,
``cgw read`` and ``cgw scan``. Alarm endpoints (JSON in and out):

- ``GET /v1/health`` -> ``{"ok": true}``; the only endpoint without a token.
- ``GET /v1/alarms`` -> the open alarms, oldest first, as a list of ``alarm_view`` objects.
- ``GET /v1/report?days=30`` -> the response report (``gateway.alarms.report``).
- ``POST /v1/alarms/{id}/ack`` and ``POST /v1/alarms/{id}/reset`` with ``{"by": "<name>"}``
  (1-64 printable characters) -> ``{"alarm": <alarm_view>, "changed": <bool>}``. Acknowledging
  an alarm already acknowledged changes nothing (``changed`` false, ``acked_by`` tells who).

Contract:
- Every other request needs ``Authorization: Bearer <token>``, compared in constant time.
  The right token is always served at once, whoever else is failing (RELIABILITY.md S26,
  fault 8: every local client is 127.0.0.1, so nothing is keyed on the peer address).
  Only failures are slowed: a missing or wrong token is answered 401 after ``fail_delay``
  seconds, one failure at a time for the whole server (so at most 1/``fail_delay`` guesses
  a second), counted in ``failed_auth``. While ``max_waiting`` failures already wait, a
  further failure is answered 429 at once (counted in ``throttled``; one WARNING a minute).
- Connections go through a ``ConnectionGate`` (``gateway.transport.listener``): a cap sized from
  the file descriptor budget, a header-read timeout and an idle keep-alive timeout from the
  config; ``gate`` has the counts.
- Errors are ``{"error": "<reason>"}``: 400 bad JSON or body, 404 no such open alarm (or
  route), 409 reset refused (the input is still active), 413 body over ``MAX_BODY`` bytes,
  503 the alarm engine has not loaded its open alarms yet.
- The token is never logged nor echoed (S12); every acknowledge and reset is logged at INFO
  with the alarm id and who did it. The access log is off: consoles poll.
- It sees the alarm engine only through ``AlarmDesk``: open alarms, acknowledge, reset and
  the response report; the devices only through the ports of ``gateway.ops.device_api``
  (``DeviceSource``, ``Commissioner``) and the availability history only through
  ``gateway.ops.report_api.AvailabilitySource`` and the welfare checks only through
  ``gateway.ops.welfare_api.WelfareDesk``, when it is given them; nothing else of the running
  gateway.
- aiohttp is imported only when the API starts, so a daemon without an ``api`` section never
  loads it. The token is read once, at start.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, Self

from gateway.alarms.lifecycle import LifecycleError
from gateway.core.clock import Clock, SystemClock
from gateway.core.contract import iso
from gateway.core.errors import ConfigError
from gateway.ops.device_api import Commissioner, DeviceRoutes, DeviceSource
from gateway.ops.replies import Refused, operator, parse_json, reply
from gateway.ops.report_api import AvailabilitySource, ReportRoutes
from gateway.ops.welfare_api import WelfareDesk, WelfareRoutes
from gateway.transport.listener import ConnectionGate, connection_cap, serve

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler

    from gateway.alarms.model import Alarm, Transition
    from gateway.config.api import ApiConfig

log = logging.getLogger(__name__)
MAX_BODY = 4096  # bytes of a request body
FAIL_DELAY = 0.25  # seconds before a failed authentication is answered, one at a time
MAX_WAITING = 8  # failed authentications waiting for their answer before more get 429
WARN_EVERY = 60.0  # seconds between two warnings about throttled failures
READY_WAIT = 5.0  # seconds a request waits for the engine to load its open alarms
_PUBLIC = frozenset({"/v1/health"})


def alarm_view(a: Alarm) -> dict[str, Any]:
    """What the API shows of an alarm; times are ISO 8601 UTC, like the upstream messages."""
    return {
        "id": a.id,
        "state": a.state.value,
        "severity": a.severity,
        "kind": a.kind,
        "device": a.device,
        "input": a.input or None,
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

    async def response_report(self, since: float, until: float | None = None) -> dict[str, Any]:
        """Response-time figures of alarms raised from ``since`` until ``until`` (wall clock;
        None: until now)."""
        ...


class LocalApi:
    """The API server as an async context manager: listening inside the ``async with``."""

    def __init__(
        self,
        cfg: ApiConfig,
        engine: AlarmDesk,
        clock: Clock | None = None,
        *,
        devices: DeviceSource | None = None,
        commissioner: Commissioner | None = None,
        reports: AvailabilitySource | None = None,
        welfare: Callable[[], WelfareDesk | None] | None = None,
        fail_delay: float = FAIL_DELAY,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.devices = None if devices is None else DeviceRoutes(devices, commissioner)
        self.reports = None if reports is None else ReportRoutes(reports)
        self.welfare = None if welfare is None else WelfareRoutes(welfare)
        self.clock = clock or SystemClock()
        self.fail_delay = fail_delay
        self.max_waiting = max_waiting
        self.failed_auth = 0  # requests with a missing or wrong token
        self.throttled = 0  # of those, answered 429 at once: max_waiting were waiting
        self.gate = ConnectionGate(
            "local alarm API", connection_cap(cfg.max_connections), cfg.header_timeout
        )
        self._token = b""
        self._waiting = 0  # failed authentications waiting for their answer
        self._failing = asyncio.Lock()  # answers failures one at a time
        self._warned_at: float | None = None
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

        app = web.Application(client_max_size=MAX_BODY, middlewares=[self.gate.middleware, guard])
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/v1/alarms", self._list)
        app.router.add_get("/v1/report", self._report)
        app.router.add_post("/v1/alarms/{id}/ack", self._ack)
        app.router.add_post("/v1/alarms/{id}/reset", self._reset)
        for routes in (self.devices, self.reports, self.welfare):
            if routes is not None:
                routes.add_to(app.router)
        runner = await serve(app, "api", self.cfg.host, self.cfg.port, self.gate,
                             idle_timeout=self.cfg.idle_timeout, shutdown_timeout=2.0)  # fmt: skip
        self._runner = runner
        if self.cfg.allow_remote:
            log.warning(
                "local alarm API on %s:%d, beyond loopback (at most %d connections)",
                self.cfg.host,
                self.cfg.port,
                self.gate.cap,
            )
        else:
            log.info(
                "local alarm API on %s:%d (at most %d connections)",
                self.cfg.host,
                self.cfg.port,
                self.gate.cap,
                extra={"cap": self.gate.cap},
            )
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
                await self._authorize(request.headers.get("Authorization"))
            return await handler(request)
        except Refused as refused:
            return reply(refused.status, {"error": refused.message}, refused.headers)
        except web.HTTPRequestEntityTooLarge:
            return reply(413, {"error": f"the request body is larger than {MAX_BODY} bytes"})
        except web.HTTPException as exc:  # the router's 404 and 405
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return reply(exc.status, {"error": exc.reason}, allow)

    async def _authorize(self, header: str | None) -> None:
        """Returns at once for the right token; a failure is answered late, or 429."""
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), self._token
        ):
            return
        self.failed_auth += 1
        if self._waiting >= self.max_waiting:
            self.throttled += 1
            self._warn_throttled()
            raise Refused(
                429,
                "too many failed authentications; try again later",
                {"Retry-After": str(max(1, math.ceil(self.max_waiting * self.fail_delay)))},
            )
        self._waiting += 1
        try:
            async with self._failing:
                await asyncio.sleep(self.fail_delay)
        finally:
            self._waiting -= 1
        raise Refused(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    def _warn_throttled(self) -> None:
        now = self.clock.mono()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "local API: %d failed authentications waiting; answering further ones 429"
                " (%d failed, %d throttled so far; a valid token is still served)",
                self.max_waiting,
                self.failed_auth,
                self.throttled,
            )

    # -- endpoints ------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return reply(200, {"ok": True})

    async def _list(self, request: web.Request) -> web.Response:
        await self._ready()
        return reply(200, [alarm_view(a) for a in self.engine.open_alarms()])

    async def _report(self, request: web.Request) -> web.Response:
        await self._ready()
        try:
            days = float(request.query.get("days", "30"))
        except ValueError:
            raise Refused(400, "days must be a number") from None
        if not 0 < days <= 3660:
            raise Refused(400, "days must be between 0 and 3660")
        since = self.clock.wall() - days * 86400
        return reply(200, {"days": days, **await self.engine.response_report(since)})

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
        return reply(200, {"alarm": alarm_view(alarm), "changed": bool(transitions)})

    async def _reset(self, request: web.Request) -> web.Response:
        alarm_id, by = await self._operator_request(request)
        try:
            transitions = await self.engine.reset(alarm_id, by)  # no await since the check
        except LifecycleError as exc:  # the alarm exists (checked above): its input is active
            log.info("alarm %s: reset by %s refused: %s (local API)", alarm_id, by, exc)
            raise Refused(409, str(exc)) from None
        log.info("alarm %s reset by %s (local API)", alarm_id, by, extra={"alarm": alarm_id})
        return reply(200, {"alarm": alarm_view(transitions[-1].alarm), "changed": True})

    async def _operator_request(self, request: web.Request) -> tuple[str, str]:
        """The alarm id (of an open alarm, else 404) and the ``by`` of the body (else 400)."""
        raw = await request.read()  # over MAX_BODY: HTTPRequestEntityTooLarge, see _guard
        body = parse_json(raw, '{"by": "<name>"}')
        if not isinstance(body, dict) or set(body) != {"by"}:
            raise Refused(400, 'the body must be a JSON object with one key, "by"')
        by = operator(body["by"])
        await self._ready()
        alarm_id = request.match_info["id"]
        if all(a.id != alarm_id for a in self.engine.open_alarms()):
            raise Refused(404, f"no open alarm {alarm_id[:64]!r}")
        return alarm_id, by

    async def _ready(self) -> None:
        try:
            async with asyncio.timeout(READY_WAIT):
                await self.engine.ready.wait()
        except TimeoutError:
            raise Refused(503, "the alarm engine is still starting; try again") from None
