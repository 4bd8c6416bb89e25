"""The upstream MQTT sink: drains the store to the platform's broker, PUBACK-gated.

Contract:
- The connection is a ``gateway.transport.mqtt.Session``: one at a time, re-made with capped,
  jittered backoff; persistent (fixed client id), a retained birth "online" and a retained last
  will "offline" on ``status``; ``cmd/+`` subscribed on every connect when commands are taken.
  This module keeps what is the sink's own: the priority window and the PUBACK tracker.
- Rows go out as QoS 1 with at most ``max_inflight`` awaiting their PUBACK. A row counts as
  delivered only after its PUBACK; the sink's cursor advances over the contiguous acknowledged
  prefix of each lane, so a crash or a cut link re-sends, never skips. Duplicates are possible
  (at-least-once); consumers dedupe on ``(site_id, gateway_id, epoch, lane, seq)``.
- Priority: alarm rows before event rows before telemetry. A telemetry batch being sent is
  cut short as soon as a higher lane has rows, so an alarm waits for at most the publishes
  already in flight, never for the backlog.
- Provisional alarms: an alarm transition the store cannot take (a full disk; it waits in
  memory) is published at once without a seq on ``alarm-provisional/<alarm_id>``
  (``render_provisional``, contract 1.4), once per transition that the broker acknowledged;
  it goes out again with its seq once the store has room.
- On stop: acknowledged rows are committed, then the session publishes a retained "offline"
  and closes the connection with DISCONNECT.
"""

import asyncio
import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import aiomqtt

from gateway.config.base import read_secret
from gateway.config.models import MqttConfig
from gateway.core.clock import Clock
from gateway.core.contract import Identity, render, render_provisional
from gateway.core.messages import Lane
from gateway.core.snapshots import SinkSnapshot
from gateway.store.outbox import Row, Store
from gateway.transport.mqtt import Endpoint, Retry, Session, Status

log = logging.getLogger(__name__)
FETCH = 256  # rows read from the store at a time
ACK_EVERY = 0.2  # seconds between cursor commits while draining
RECONNECT_BASE = 1.0  # first reconnect pause (s); doubles up to ``reconnect_max``


class AckTracker:
    """Rows in flight per lane; yields how far each lane is acknowledged without holes."""

    def __init__(self) -> None:
        # per lane, in send order: row id -> monotonic send time, or None once acknowledged
        self._flight: dict[Lane, OrderedDict[int, float | None]] = {
            ln: OrderedDict() for ln in Lane
        }
        self.upto: dict[Lane, int] = {}
        self.unsaved = 0

    def sent(self, row: Row, now: float) -> None:
        """``row`` was handed to the client at monotonic time ``now``."""
        self._flight[row.lane][row.id] = now

    def acked(self, row: Row) -> None:
        """``row`` got its PUBACK."""
        flight = self._flight[row.lane]
        flight[row.id] = None
        while flight:
            first = next(iter(flight))
            if flight[first] is not None:
                break
            flight.popitem(last=False)
            self.upto[row.lane] = first
        self.unsaved += 1

    def oldest(self) -> float | None:
        """Send time of the longest-waiting unacknowledged row (the head of some lane)."""
        heads = [next(iter(f.values())) for f in self._flight.values() if f]
        return min((t for t in heads if t is not None), default=None)


class MqttSink:
    """Delivers stored rows to the upstream broker."""

    name = "mqtt"

    def __init__(
        self,
        cfg: MqttConfig,
        ident: Identity,
        store: Store,
        clock: Clock,
        on_command: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.ident = ident
        self.on_command = on_command  # (command name, payload) for every cmd/<name> message
        self.commands_received = 0
        self.store = store
        self.clock = clock
        self.published = 0
        self.provisional = 0  # alarm transitions published without a seq (a full disk)
        self._provisional_sent: set[bytes] = set()  # of those waiting now, the acknowledged
        password = read_secret(cfg.password_file) if cfg.password_file else None
        status = Status(
            ident.topic("status"), lambda state: ident.status_payload(state, clock.wall())
        )
        endpoint = Endpoint(
            cfg.host,
            cfg.effective_port,
            cfg.client_id or f"cgw-{ident.site_id}-{ident.gateway_id}",
            username=cfg.username,
            password=password,
            tls=cfg.tls.client_context() if cfg.tls else None,
            keepalive=cfg.keepalive,
            # CONNACK, SUBACK, the birth: PUBACKs of rows wait for ``_watchdog`` instead
            timeout=cfg.connect_timeout,
            connect_timeout=cfg.connect_timeout,
            max_inflight=cfg.max_inflight,
        )
        # The session is persistent: commands sent while we were away are queued by the
        # broker and arrive on reconnect (expired ones are reported, never executed).
        commands = [(ident.topic("cmd/+"), 1)] if on_command is not None else []
        self.session = Session(
            endpoint,
            Retry(RECONNECT_BASE, cfg.reconnect_max),
            label="upstream broker",
            down="buffering locally",
            subscriptions=commands,
            status=status,
        )
        self.connected = self.session.connected
        self.ever_connected = self.session.ever_connected  # readiness: the first connect

    @property
    def client_id(self) -> str:
        """The MQTT client identifier (fixed, so the broker keeps the session)."""
        return self.session.endpoint.client_id

    @property
    def reconnects(self) -> int:
        """Connections lost or refused."""
        return self.session.reconnects

    @property
    def last_error(self) -> str:
        """Why the latest connection failed or ended ("" before any failure)."""
        return self.session.last_error

    def snapshot(self) -> SinkSnapshot:
        """The session's state and what the broker confirmed."""
        return SinkSnapshot(
            connected=self.connected.is_set(),
            last_error=self.last_error,
            delivered=self.published,
            reconnects=self.reconnects,
            provisional=self.provisional,
        )

    async def run(self) -> None:
        """Connect, drain, reconnect: until cancelled."""
        await self.session.run(self._serve)

    async def _serve(self, client: aiomqtt.Client) -> None:
        tracker = AckTracker()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(client), name="sink:mqtt:watch")
                tg.create_task(self._save_loop(tracker), name="sink:mqtt:ack")
                tg.create_task(self._provisional(client), name="sink:mqtt:provisional")
                await self._drain(client, tracker, tg)
        finally:
            # before the session's "offline" on a stop; the rest is sent again next time
            await asyncio.shield(self._save(tracker))
            self.store.rewind(self.name)

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Hand on commands; raise ``MqttError`` as soon as the connection drops."""
        prefix = self.ident.topic("cmd/")
        async for message in client.messages:
            topic = message.topic.value
            if self.on_command is None or not topic.startswith(prefix):
                continue
            payload = message.payload
            raw = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            self.commands_received += 1
            self.on_command(topic[len(prefix) :], raw)

    async def _provisional(self, client: aiomqtt.Client) -> None:
        """Publish alarm transitions that wait in memory for room in the store (a full disk).

        Each is sent once the broker acknowledged it (again after a lost link if it had not);
        a transition the store took since leaves the set and goes out with its seq instead.
        """
        sent = self._provisional_sent
        while True:
            change = self.store.next_change()  # made before the check: no commit is missed
            try:
                waiting = self.store.ledger.waiting(Lane.ALARM)
                pending = [render_provisional(self.ident, rec) for rec in waiting]
                sent.intersection_update(payload for _, payload in pending)
                for topic, payload in pending:
                    if payload not in sent:
                        await client.publish(topic, payload, qos=1, timeout=math.inf)
                        sent.add(payload)
                        self.provisional += 1
                await change
            finally:
                change.cancel()

    async def _drain(
        self, client: aiomqtt.Client, tracker: AckTracker, tg: asyncio.TaskGroup
    ) -> None:
        """Hand rows, most urgent lane first, to ``max_inflight`` long-lived publishers.

        Long-lived workers and no per-publish timeout: a task and an ``asyncio.wait_for`` per
        row cost more CPU than the publish itself (docs/performance.md). A lost link still
        ends every pending publish at once (``_watch``); a broker that stops acknowledging is
        caught by ``_watchdog``.
        """
        loop = asyncio.get_running_loop()
        window = _Window(self.cfg.max_inflight, self.cfg.telemetry_inflight)
        queue: deque[Row] = deque()
        ready = asyncio.Event()
        for n in range(self.cfg.max_inflight):
            tg.create_task(
                self._worker(client, queue, ready, window, tracker), name=f"sink:mqtt:{n}"
            )
        tg.create_task(self._watchdog(tracker), name="sink:mqtt:watchdog")
        while True:
            rows = await self.store.fetch(self.name, FETCH)
            if not rows:
                await self.store.wait_for_rows(self.name)
                continue
            for i, row in enumerate(rows):
                if row.lane is not Lane.ALARM and self.store.has_more_urgent(self.name, row.lane):
                    self.store.give_back(self.name, rows[i:])
                    break
                if not await window.acquire(
                    row.lane,
                    lambda ln: self.store.has_more_urgent(self.name, ln),
                    self.store.next_change,
                ):
                    self.store.give_back(self.name, rows[i:])  # an alarm came in meanwhile
                    break
                tracker.sent(row, loop.time())
                queue.append(row)
                ready.set()

    async def _worker(
        self,
        client: aiomqtt.Client,
        queue: deque[Row],
        ready: asyncio.Event,
        window: "_Window",
        tracker: AckTracker,
    ) -> None:
        while True:
            while not queue:
                ready.clear()
                await ready.wait()
            row = queue.popleft()
            topic, payload = render(self.ident, row)
            try:
                await client.publish(topic, payload, qos=1, retain=row.retain, timeout=math.inf)
            finally:
                window.release(row.lane)
            tracker.acked(row)
            self.published += 1

    async def _watchdog(self, tracker: AckTracker) -> None:
        """End the connection when a PUBACK is ``publish_timeout`` late (F02, F07)."""
        loop = asyncio.get_running_loop()
        limit = self.cfg.publish_timeout
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            oldest = tracker.oldest()
            if oldest is not None and loop.time() - oldest > limit:
                raise aiomqtt.MqttError(f"publish timed out: no PUBACK for {limit:g} s")

    async def _save_loop(self, tracker: AckTracker) -> None:
        while True:
            await asyncio.sleep(ACK_EVERY)
            await self._save(tracker)

    async def _save(self, tracker: AckTracker) -> None:
        if tracker.unsaved:
            tracker.unsaved = 0
            await self.store.ack(self.name, dict(tracker.upto))


class _Window:
    """At most ``size`` rows awaiting PUBACK, of which at most ``telemetry`` telemetry rows.

    Telemetry never takes the last slots, so an alarm finds a free one at once instead of
    queuing behind a full window of backlog in the client, the socket and the broker. A
    telemetry row waiting for its share gives its turn back as soon as a more urgent row is
    committed (``changed()`` gives a future that completes at the next commit), not only when
    a telemetry PUBACK frees a slot: PUBACKs that stall (a lossy link, F07) would otherwise
    hold the alarm back, the drain loop parked behind the full telemetry share.
    """

    def __init__(self, size: int, telemetry: int) -> None:
        self._all = asyncio.Semaphore(size)
        self._telemetry_max = max(1, min(telemetry, size))
        self._telemetry = 0
        self._freed: asyncio.Future[None] | None = None

    async def acquire(
        self,
        lane: Lane,
        preempted: Callable[[Lane], bool],
        changed: "Callable[[], asyncio.Future[None]] | None" = None,
    ) -> bool:
        """Take a slot for a row of ``lane``; False if a more urgent row arrived meanwhile."""
        if lane is Lane.TELEMETRY:
            while self._telemetry >= self._telemetry_max:
                if preempted(lane):
                    return False
                await self._next_change(changed)
            if preempted(lane):
                return False
            self._telemetry += 1
        await self._all.acquire()
        return True

    async def _next_change(self, changed: "Callable[[], asyncio.Future[None]] | None") -> None:
        """Until a telemetry slot is freed or (with ``changed``) the store commits. Both are
        plain futures made before this yields: no task, and no wake-up falls between the
        caller's check and the wait."""
        self._freed = asyncio.get_running_loop().create_future()
        waits = [self._freed] if changed is None else [self._freed, changed()]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits:
                fut.cancel()
            self._freed = None

    def release(self, lane: Lane) -> None:
        """A row of ``lane`` got its PUBACK (or failed)."""
        self._all.release()
        if lane is Lane.TELEMETRY:
            self._telemetry -= 1
            if self._freed is not None and not self._freed.done():
                self._freed.set_result(None)


def describe(cfg: MqttConfig) -> dict[str, Any]:
    """A secret-free summary of the upstream settings."""
    return {
        "host": cfg.host,
        "port": cfg.effective_port,
        "tls": cfg.tls is not None,
        "mutual_tls": cfg.tls is not None and cfg.tls.cert_file is not None,
        "username": cfg.username,
        "topic_root": cfg.topic_root,
    }
