"""The local API's device routes: what each device reads now, and commissioning its buses.

Endpoints (bearer token as for every route of ``gateway.ops.api``; JSON in and out):

- ``GET /v1/devices`` -> ``{"devices": [<device_view>, ...]}`` in config order (a device a
  reload adds comes last).
- ``GET /v1/devices/{id}`` -> one ``device_view`` (``gateway.ops.device_view``); 404 if unknown.
- ``POST /v1/devices/{id}/read`` with ``{"raw": true, "by": "<name>"}`` (both optional) ->
  one read of the device now: its scaled, judged values, and with ``raw`` the registers of
  each read request (``read_view``). 404 unknown device; 400 not a Modbus device.
- ``POST /v1/buses/{bus}/scan`` with ``{"units": "1-247", "timeout": 0.1, "by": "<name>"}``
  (all optional; ``units`` like ``1-5,9``, ``timeout`` 0.01-2 s a unit has to answer) ->
  ``scan_view``: the unit ids that answer and each one's ranked profile guesses. 400 bad
  units or timeout; 404 unknown bus; 409 a scan of that bus runs already.
- Either POST: 503 when the bus cannot be opened or its group is restarting.

Contract:
- The routes see the gateway through two ports only: ``DeviceSource`` (the device states'
  snapshot) and ``Commissioner`` (scan and read over the buses). Without a commissioner the
  POST routes answer 503.
- Scans and reads only read: nothing is written to a device. They go through the bus's
  lock, so they interleave with the daemon's polling and never collide with it.
- One scan per bus at a time (a second is answered 409 at once); a scan stops asking new unit
  ids after ``scan_limit`` seconds, and its answer says how far it got (``complete`` false).
- Every POST is logged at INFO as an action naming who asked: the body's ``by`` (the console
  passes the person's name), else "a local API caller"; a scan's result is logged too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from gateway.core.commission import (
    ALL_UNITS,
    MAX_SCAN_TIMEOUT,
    SCAN_TIMEOUT,
    DeviceRead,
    NotFound,
    NotReadable,
    ScanReport,
    parse_units,
)
from gateway.core.devices import DeviceState
from gateway.core.errors import TransientError
from gateway.ops.device_view import device_view, read_view, scan_view
from gateway.ops.replies import Refused, json_object, operator, reply

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)
SCAN_LIMIT = 120.0  # seconds a scan may ask new unit ids (247 at 0.1 s take about 30 s)
CALLER = "a local API caller"  # who asked, when the body names no one


class DeviceSource(Protocol):
    """The routes' port to the device states (``gateway.core.devices.DeviceStates``)."""

    def snapshot(self) -> Mapping[str, DeviceState]:
        """Every device now, in the order they were registered."""
        ...


class Commissioner(Protocol):
    """The routes' port to the buses: scan one, read a device now. Raises ``NotFound``,
    ``NotReadable``, or ``TransientError`` when the bus cannot be used now."""

    async def scan(
        self, bus: str, units: Sequence[int], within: float, budget: float
    ) -> ScanReport:
        """Which ``units`` answer on ``bus`` within ``within`` s each; no new unit after
        ``budget`` s."""
        ...

    async def read(self, device: str) -> DeviceRead:
        """One read of ``device`` now."""
        ...


class DeviceRoutes:
    """The device endpoints, added to the API's router by ``add_to``."""

    def __init__(
        self,
        devices: DeviceSource,
        commissioner: Commissioner | None,
        scan_limit: float = SCAN_LIMIT,
    ) -> None:
        self.devices = devices
        self.commissioner = commissioner
        self.scan_limit = scan_limit
        self.scanning: set[str] = set()  # buses a scan runs on now

    def add_to(self, router: web.UrlDispatcher) -> None:
        """Register the endpoints."""
        router.add_get("/v1/devices", self._list)
        router.add_get("/v1/devices/{id}", self._one)
        router.add_post("/v1/devices/{id}/read", self._read)
        router.add_post("/v1/buses/{bus}/scan", self._scan)

    async def _list(self, request: web.Request) -> web.Response:
        states = self.devices.snapshot()
        return reply(200, {"devices": [device_view(s) for s in states.values()]})

    async def _one(self, request: web.Request) -> web.Response:
        device = request.match_info["id"]
        state = self.devices.snapshot().get(device)
        if state is None:
            raise Refused(404, f"no device {device[:64]!r}")
        return reply(200, device_view(state))

    async def _read(self, request: web.Request) -> web.Response:
        body = json_object(await request.read(), ("raw", "by"), '{"raw": true}')
        raw = body.get("raw", False)
        if not isinstance(raw, bool):
            raise Refused(400, '"raw" must be true or false')
        who = operator(body["by"]) if "by" in body else CALLER
        device = request.match_info["id"]
        log.info("action: read of device %s asked by %s (local API)", device, who,
                 extra={"device": device, "by": who})  # fmt: skip
        with _refusals():
            read = await self._port().read(device)
        return reply(200, read_view(read, raw))

    async def _scan(self, request: web.Request) -> web.Response:
        example = '{"units": "1-247"}'
        body = json_object(await request.read(), ("units", "timeout", "by"), example)
        text = body.get("units", ALL_UNITS)
        try:
            units = parse_units(text if isinstance(text, str) else "")
        except ValueError as exc:
            raise Refused(400, f'"units": {exc}') from None
        within = body.get("timeout", SCAN_TIMEOUT)
        if not isinstance(within, int | float) or not 0.01 <= within <= MAX_SCAN_TIMEOUT:
            raise Refused(400, f'"timeout" must be 0.01 to {MAX_SCAN_TIMEOUT:g} seconds')
        who = operator(body["by"]) if "by" in body else CALLER
        bus = request.match_info["bus"]
        port = self._port()
        if bus in self.scanning:
            raise Refused(409, f"a scan of bus {bus} runs already; wait for its answer")
        log.info("action: scan of bus %s, units %s, asked by %s (local API)", bus, text, who,
                 extra={"bus": bus, "by": who})  # fmt: skip
        self.scanning.add(bus)
        try:
            with _refusals():
                report = await port.scan(bus, units, float(within), self.scan_limit)
        finally:
            self.scanning.discard(bus)
        log.info(
            "scan of bus %s: %d of %d unit ids answer (%s) in %.1f s%s",
            bus,
            len(report.found),
            len(report.asked),
            ", ".join(f"{f.unit}: {f.profile}" for f in report.found) or "none",
            report.seconds,
            "" if report.complete else f"; stopped after {self.scan_limit:g} s",
            extra={"bus": bus},
        )
        return reply(200, scan_view(report))

    def _port(self) -> Commissioner:
        if self.commissioner is None:
            raise Refused(503, "this gateway does not commission its buses")
        return self.commissioner


@contextmanager
def _refusals() -> Iterator[None]:
    """The port's errors as the API's answers: 404, 400, 503."""
    try:
        yield
    except NotFound as exc:
        raise Refused(404, str(exc)) from None
    except NotReadable as exc:
        raise Refused(400, str(exc)) from None
    except TransientError as exc:
        raise Refused(503, str(exc)) from None
