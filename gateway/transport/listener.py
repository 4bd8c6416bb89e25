"""Bounded HTTP listeners (the local API, the monitor, the console, HTTP push devices): a
connection cap and timeouts.

Idle or slow clients must never make the alarm API or ``/health`` unreachable, nor take the
file descriptors the store, the brokers and the dedup files need (RELIABILITY.md, fault 9).

Contract:
- ``fd_budget()`` raises the soft ``RLIMIT_NOFILE`` to the hard limit once per process (logged
  at INFO with both figures) and returns the soft limit now in force.
- ``connection_cap(configured)`` is the per-listener cap: ``configured`` if set, else what
  the budget leaves after ``RESERVED_FDS`` for everything else, shared by ``LISTENERS``.
- ``GatedSite`` is an aiohttp ``TCPSite`` whose connections go through a ``ConnectionGate``:
  - at most ``cap`` connections are open at once. A connection arriving at the cap closes
    the oldest connection that has no request in progress (``evicted``), so a client that
    sends a request always gets in; if every connection is busy the new one is closed at
    once (``refused``). The first time in ``LOG_EVERY`` seconds this happens, one WARNING.
  - a connection that has not sent complete request headers within ``header_timeout``
    seconds is closed (``timed_out``); between requests, aiohttp's keep-alive timeout
    (``idle_timeout``, passed to ``AppRunner``) closes idle ones.
  - ``gate.middleware`` must be installed on the application: it is how the gate knows a
    connection has a request in progress.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import ssl

    from aiohttp import web
    from aiohttp.typedefs import Handler, Middleware
    from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)
RESERVED_FDS = 256  # kept for the store, the brokers, devices, dedup files and logs
LISTENERS = 4  # the local API, the monitor, the console and HTTP push share what is left
MIN_CAP = 16  # never fewer connections per listener, however low the limit
LOG_EVERY = 60.0  # seconds between two warnings about the cap of one listener
_budget: int | None = None


def fd_budget() -> int:
    """The soft file descriptor limit, raised to the hard limit on the first call."""
    global _budget
    if _budget is None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 65536 if hard == resource.RLIM_INFINITY else hard
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep the soft one
                target = soft
        else:
            target = soft
        log.info(
            "file descriptors: soft limit %d (was %d, hard limit %s); %d reserved beyond"
            " the listeners' connection caps",
            target,
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
            RESERVED_FDS,
            extra={"nofile": target},
        )
        _budget = target
    return _budget


def connection_cap(configured: int | None) -> int:
    """Connections one listener may hold open: ``configured``, else sized from the budget."""
    if configured is not None:
        return configured
    return max(MIN_CAP, (fd_budget() - RESERVED_FDS) // LISTENERS)


class _Conn:
    """What the gate knows of one connection."""

    __slots__ = ("busy", "handler", "served", "timer", "transport")

    def __init__(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        self.handler = handler
        self.transport = transport
        self.busy = 0  # requests in progress
        self.served = 0  # requests whose headers arrived
        self.timer: asyncio.TimerHandle | None = None


class ConnectionGate:
    """Counts and bounds the connections of one listener (see the module contract)."""

    def __init__(self, name: str, cap: int, header_timeout: float) -> None:
        self.name = name
        self.cap = cap
        self.header_timeout = header_timeout
        self.accepted = 0  # connections let in
        self.evicted = 0  # idle connections closed to make room for a new one
        self.refused = 0  # new connections closed at once: every open one was busy
        self.timed_out = 0  # closed: no complete request headers within header_timeout
        self._open: OrderedDict[RequestHandler, _Conn] = OrderedDict()  # oldest first
        self._logged_at: float | None = None

    @property
    def open(self) -> int:
        """Connections open now."""
        return len(self._open)

    def protocol(self, server: web.Server) -> _GatedProtocol:
        """A protocol for one new connection (the ``create_server`` factory)."""
        return _GatedProtocol(self, server())

    @property
    def middleware(self) -> Middleware:
        """Marks the request's connection busy while the request is handled."""
        from aiohttp import web

        @web.middleware
        async def busy(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = self._open.get(request.protocol)
            if conn is None:  # closed under the request already
                return await handler(request)
            conn.busy += 1
            conn.served += 1
            try:
                return await handler(request)
            finally:
                conn.busy -= 1

        return busy

    def admit(self, handler: RequestHandler, transport: asyncio.Transport) -> bool:
        """Whether a new connection may go on; makes room or closes it at the cap."""
        if len(self._open) >= self.cap:
            idle = next((c for c in self._open.values() if not c.busy), None)
            if idle is None:
                self.refused += 1
                transport.abort()
                self._warn()
                return False
            self.evicted += 1
            self._drop(idle)
            idle.transport.abort()
            self._warn()
        conn = self._open[handler] = _Conn(handler, transport)
        self.accepted += 1
        loop = asyncio.get_running_loop()
        conn.timer = loop.call_later(self.header_timeout, self._headers_due, conn)
        return True

    def forget(self, handler: RequestHandler) -> None:
        """The connection is gone."""
        conn = self._open.get(handler)
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        del self._open[conn.handler]
        if conn.timer is not None:
            conn.timer.cancel()

    def _headers_due(self, conn: _Conn) -> None:
        conn.timer = None
        if conn.served == 0 and self._open.get(conn.handler) is conn:
            self.timed_out += 1
            self._drop(conn)
            conn.transport.abort()

    def _warn(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning(
                "%s: %d connections open, the cap; closing the oldest idle ones"
                " (%d evicted, %d refused so far)",
                self.name,
                self.cap,
                self.evicted,
                self.refused,
                extra={"listener": self.name, "cap": self.cap},
            )


class _GatedProtocol(asyncio.Protocol):
    """aiohttp's request handler behind the gate; every event is passed on once admitted."""

    def __init__(self, gate: ConnectionGate, inner: RequestHandler) -> None:
        self._gate = gate
        self._inner = inner
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._admitted = self._gate.admit(self._inner, cast(asyncio.Transport, transport))
        if self._admitted:
            self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._gate.forget(self._inner)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> None:
        if self._admitted:
            self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


def gated_site(
    runner: web.AppRunner,
    host: str,
    port: int,
    gate: ConnectionGate,
    tls: ssl.SSLContext | None = None,
) -> web.TCPSite:
    """A started-on-``start()`` aiohttp site on ``host:port`` whose connections pass ``gate``;
    TLS with ``tls``."""
    from aiohttp import web

    class GatedSite(web.TCPSite):
        __slots__ = ()

        async def start(self) -> None:
            await web.BaseSite.start(self)  # registers the site with the runner
            server = runner.server
            assert server is not None
            self._server = await asyncio.get_running_loop().create_server(
                lambda: gate.protocol(server), host, port, reuse_address=True, ssl=tls
            )

    return GatedSite(runner, host, port)


async def serve(
    app: web.Application,
    name: str,
    host: str,
    port: int,
    gate: ConnectionGate,
    *,
    idle_timeout: float,
    shutdown_timeout: float,
    tls: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Start ``app`` on ``host:port`` behind ``gate``; the runner, to ``cleanup()`` at the end.

    A port that cannot be taken is a ``ConfigError`` naming the section (``name``) and why;
    nothing is left listening then.
    """
    from aiohttp import web

    from gateway.core.errors import ConfigError

    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=shutdown_timeout, keepalive_timeout=idle_timeout
    )
    await runner.setup()
    try:
        await gated_site(runner, host, port, gate, tls).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError([f"{name}: cannot listen on {host}:{port}: {exc.strerror}"]) from exc
    return runner
