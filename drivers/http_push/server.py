"""The push listener: vendor devices POST readings or door events; answered once kept.

Contract:
- ``run(emit)`` serves ``POST /push/<entry>[/<device>][/heartbeat]`` on the ``http_push``
  listener (``gateway.transport.listener``: connection cap, header and idle timeouts; TLS
  when configured) and runs the inboxes' timers (device timeouts, door held-open) until
  cancelled; the port is released when it returns.
- Each post is judged cheapest first, each refusal with its reason, its status and the
  entry's ``refused_body``: ``unknown_entry`` / ``unknown_topic`` / ``unknown_device`` 404
  (an invented id makes no state), ``too_large`` 413 (on Content-Length, then on what is
  read: never more than ``max_body`` + 1 bytes), ``unauthorized`` 401 (``body.authorised``),
  ``rate_limited`` 429 (readings: the entry's budget per device of the path, or per entry;
  door events: the terminals' own rule, which never refuses an event that changes what a door
  did), ``not_form`` and the mapping's reasons 400, ``not_kept`` 503.
- A post that goes on is handed to the inbox (``JsonDevices.handle`` or
  ``DoorTerminals.handle``), which maps it and emits to the pipeline; a terminal record is
  mapped by ``records.parse`` (its reasons: ``unknown_kind``, ``undeclared_field`` ... 400)
  and emitted as a ``TerminalRecord``, which the pipeline seals before anything else sees it.
  The answer waits for ``settled`` (the store's commit of everything emitted so far); only
  then the entry's ``reply`` goes out, so a device re-sends whatever the gateway did not keep:
  a kill before the commit leaves it without an answer; a failed commit is ``not_kept`` 503.
  Re-sent door events are dropped by the pipeline's event-id dedup.
- Counters: ``accepted`` (posts answered with the reply), ``rejected[reason]`` (also as
  ``rejected`` of the device when the device is configured). Each (reason, entry) is logged
  once at WARNING, without the body (door events carry personal data).
"""

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from drivers.base import Emit
from drivers.doors.terminals import DoorTerminals
from drivers.http_push.body import BodyError, Secrets, authorised, document
from drivers.http_push.records import Refused, parse
from drivers.mqtt.limit import Limiter
from drivers.mqtt_json.devices import JsonDevices
from gateway.config.http_push import HttpPushDeviceConfig, PushListenerConfig
from gateway.config.mqtt_devices import NAME_RE
from gateway.config.records import RecordsConfig
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError
from gateway.transport.listener import ConnectionGate, connection_cap, serve

log = logging.getLogger(__name__)
STATUS = {
    "unknown_entry": 404,
    "unknown_topic": 404,
    "unknown_device": 404,
    "too_large": 413,
    "unauthorized": 401,
    "rate_limited": 429,
    "not_kept": 503,
}
LOGGED_MAX = 1024


class PushServer:
    """The HTTP listener of the ``http_push`` entries."""

    name = "http_push"

    def __init__(
        self,
        listener: PushListenerConfig,
        entries: Sequence[HttpPushDeviceConfig],
        *,
        readings: JsonDevices | None,
        doors: DoorTerminals | None,
        records: RecordsConfig | None = None,
        clock: Clock,
        settled: Callable[[], Awaitable[None]] | None,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.cfg = listener
        self.entries = {e.id: e for e in entries}
        self.readings, self.doors, self.records = readings, doors, records
        self.clock, self.settled = clock, settled
        self._secrets = {e.id: Secrets.of(e.auth) for e in entries}
        self._limits = {e.id: Limiter(e.rate_limit, clock.mono) for e in entries if e.door is None}
        self._known = {d: e.id for e in entries for d in e.device_ids}
        self._count = count
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()
        self.listening = asyncio.Event()
        self.gate = ConnectionGate("http_push", connection_cap(listener.max_connections),
                                   listener.header_timeout)  # fmt: skip

    async def run(self, emit: Emit) -> None:
        """Serve posts and run the inboxes' timers until cancelled."""
        app = web.Application(middlewares=[self.gate.middleware])
        handler = lambda request: self._post(request, emit)  # noqa: E731
        app.router.add_post("/push/{entry}", handler)
        app.router.add_post("/push/{entry}/{tail:.+}", handler)
        tls = None
        if self.cfg.tls_cert is not None and self.cfg.tls_key is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        runner = await serve(app, "http_push", self.cfg.host, self.cfg.port, self.gate,
                             idle_timeout=self.cfg.idle_timeout, shutdown_timeout=1.0,
                             tls=tls)  # fmt: skip
        scheme = "https" if tls else "http"
        log.info("http_push listening on %s://%s:%d (%d entries)", scheme, self.cfg.host,
                 self.cfg.port, len(self.entries))  # fmt: skip
        self.listening.set()
        try:
            async with asyncio.TaskGroup() as tg:
                if self.readings is not None:
                    tg.create_task(self.readings.timers(emit), name="http_push:readings")
                if self.doors is not None:
                    tg.create_task(self.doors.timers(emit), name="http_push:doors")
                await asyncio.Event().wait()
        finally:
            self.listening.clear()
            await runner.cleanup()

    async def _post(self, request: web.Request, emit: Emit) -> web.Response:
        entry = self.entries.get(request.match_info["entry"])
        if entry is None:
            return self._refuse(None, "unknown_entry", "", "no such entry")
        tail = request.match_info.get("tail", "")
        levels = tail.split("/") if tail else []
        if len(levels) > 2 or not all(NAME_RE.fullmatch(level) for level in levels):
            return self._refuse(entry, "unknown_topic", "", "no such path")
        device = levels[0] if levels and levels[0] != "heartbeat" else ""
        size = request.content_length
        if size is not None and size > entry.max_body:
            return self._refuse(entry, "too_large", device, f"{size} bytes")
        body = await _read(request, entry.max_body)
        if body is None:
            return self._refuse(entry, "too_large", device, f"over {entry.max_body} bytes")
        if not authorised(entry.auth, self._secrets[entry.id], request.headers,
                          request.query, body):  # fmt: skip
            return self._refuse(entry, "unauthorized", device, "bad or missing credentials")
        limiter = self._limits.get(entry.id)
        if limiter is not None and not limiter.admit(device or entry.id):
            return self._refuse(entry, "rate_limited", device, "over its budget")
        try:
            doc = document(entry, body)
        except BodyError as exc:
            return self._refuse(entry, exc.reason, device, str(exc))
        if entry.records is not None:
            refused = self._record(entry, levels, doc, emit)
            if refused is not None:
                return refused
        else:
            topic = "/".join([entry.topic, *levels])
            inbox = self.readings if entry.readings is not None else self.doors
            assert inbox is not None  # built for every kind of entry configured
            reason = inbox.handle(topic, doc, emit)
            if reason is not None:
                return self._refuse(entry, reason, device, "refused by the mapping", counted=True)
        if self.settled is not None:
            try:
                await self.settled()
            except GatewayError as exc:
                return self._refuse(entry, "not_kept", device, str(exc))
        self.accepted += 1
        reply = entry.reply
        return web.Response(status=reply.status, body=reply.body.encode(),
                            content_type=_mime(reply.content_type),
                            charset="utf-8")  # fmt: skip

    def _record(self, entry: HttpPushDeviceConfig, levels: list[str], body: bytes,
                emit: Emit) -> web.Response | None:  # fmt: skip
        """Map and emit a terminal record; the refusal, if it is refused."""
        assert self.records is not None  # the loader insists on both
        assert entry.records is not None
        if levels:
            return self._refuse(entry, "unknown_topic", "", "a record terminal has one path")
        try:
            record = parse(self.records, frozenset(entry.records), entry.id, body,
                           self.clock.wall())  # fmt: skip
        except Refused as exc:
            return self._refuse(entry, exc.reason, entry.id, str(exc))
        emit(record)
        return None

    def _refuse(self, entry: HttpPushDeviceConfig | None, reason: str, device: str,
                detail: str, counted: bool = False) -> web.Response:  # fmt: skip
        """Count (unless the inbox did), log once, and answer a refusal."""
        if not counted:
            self.rejected[reason] += 1
            owner = device if device in self._known else entry.id if entry else ""
            if owner in self._known and self._count is not None:
                self._count(owner, "rejected")
        who = entry.id if entry is not None else "-"
        if (reason, who) not in self._logged and len(self._logged) < LOGGED_MAX:
            self._logged.add((reason, who))
            log.warning("http_push post to %s refused (%s): %s; further ones are counted, not"
                        " logged", who, reason, detail[:200])  # fmt: skip
        if entry is None:
            return web.Response(status=404, text="unknown entry\n")
        return web.Response(
            status=STATUS.get(reason, 400),
            body=entry.reply.refused_body.replace("{reason}", reason).encode(),
            content_type=_mime(entry.reply.content_type),
            charset="utf-8",
        )


async def _read(request: web.Request, limit: int) -> bytes | None:
    """The whole body, however it is chunked; None as soon as it is longer than ``limit``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip() or "application/octet-stream"
