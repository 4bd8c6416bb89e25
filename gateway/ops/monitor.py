"""The monitoring endpoint: ``GET /health`` (JSON) and ``GET /metrics`` (Prometheus).

Contract:
- Listens where ``monitor:`` says (loopback by default) inside ``async with Monitor(...)``;
  a port already taken is a ``ConfigError`` naming the address.
- ``/health``: 200 with ``status: ok`` when every required component is ok, else 503 with
  ``status`` ``starting`` or ``degraded`` and ``failing`` naming the components (see
  ``gateway.ops.health``). ``/metrics``: the text exposition format. Anything else: 404 JSON.
- Reads the gateway only through the ``snapshot`` port it is given.
- Read-only, no token, no request body is read; aiohttp and prometheus_client are imported
  only when the monitor starts.
- Connections go through a ``ConnectionGate`` (``gateway.transport.listener``): a capped number
  open at once (the oldest idle one closed to make room, so ``/health`` always answers),
  a header-read timeout and an idle keep-alive timeout from the config.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from gateway.ops.health import health
from gateway.ops.snapshot import GatewaySnapshot
from gateway.transport.listener import ConnectionGate, connection_cap, serve

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.config.monitor import MonitorConfig

log = logging.getLogger(__name__)


class Monitor:
    """The health and metrics server as an async context manager."""

    def __init__(self, cfg: MonitorConfig, snapshot: Callable[[], GatewaySnapshot]) -> None:
        from gateway.ops.metrics import registry_for  # prometheus_client: only with a monitor

        self.cfg = cfg
        self.snapshot = snapshot  # the gateway as it is now; taken once per request
        self._runner: web.AppRunner | None = None
        self._registry = registry_for(snapshot)
        self.gate = ConnectionGate(
            "monitor", connection_cap(cfg.max_connections), cfg.header_timeout
        )

    async def __aenter__(self) -> Self:
        from aiohttp import web

        app = web.Application(middlewares=[self.gate.middleware])
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        runner = await serve(app, "monitor", self.cfg.host, self.cfg.port, self.gate,
                             idle_timeout=self.cfg.idle_timeout, shutdown_timeout=1.0)  # fmt: skip
        self._runner = runner
        log.info(
            "health and metrics on %s (/health, /metrics; at most %d connections)",
            self.cfg.url,
            self.gate.cap,
            extra={"cap": self.gate.cap},
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        from aiohttp import web

        status, doc = health(self.snapshot())
        return web.json_response(doc, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        from gateway.ops.metrics import CONTENT_TYPE, render

        return web.Response(body=render(self._registry), headers={"Content-Type": CONTENT_TYPE})
