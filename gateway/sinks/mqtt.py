"""The upstream MQTT sink: drains the store to the platform's broker, PUBACK-gated.

Contract:
- The connection is a ``gateway.transport.mqtt.Session``: one at a time, re-made with capped,
  jittered backoff; persistent (fixed client id), a retained birth "online" and a retained last
  will "offline" on ``status``; ``cmd/+`` subscribed on every connect when commands are taken.
  This module keeps what is the sink's own: the priority window and the PUBACK tracker
  (``gateway.sinks.window``).
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
- A broker that refuses a row by closing the connection on its publish (MQTT 3.1.1 §3.3.5)
  would have it sent on every connection and every row behind it wait. The sink weighs how
  each connection ended (``gateway.sinks.refusals``): the same lane head in flight at repeated
  closes makes it send one row at a time; a row alone in flight at ``LIMIT`` closes in a row
  is dead-lettered: counted per lane, logged once (CRITICAL for an alarm, ERROR otherwise),
  reported upstream by a ``publish-refused`` event (none for a refused ``publish-refused``:
  no loop), and confirmed, so the rows behind it go out. Closes the sink made itself (its
  PUBACK watchdog, a stop) and keepalive expiry are no evidence: an outage never dead-letters.
  The event is committed before the cursor moves; a crash between the two reports the row
  again after the restart, never not at all.
- On stop: acknowledged rows are committed, then the session publishes a retained "offline"
  and closes the connection with DISCONNECT.
"""

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import aiomqtt

from gateway.config.base import read_secret
from gateway.config.models import MqttConfig
from gateway.core.clock import Clock
from gateway.core.contract import (
    REFUSED_TOPIC,
    Identity,
    refused_record,
    render,
    render_provisional,
)
from gateway.core.messages import Lane
from gateway.core.snapshots import SinkSnapshot
from gateway.sinks.refusals import Loss, Refusals
from gateway.sinks.window import AckTracker, Window
from gateway.store.outbox import Row, Store
from gateway.transport.mqtt import Endpoint, Retry, Session, Status
from gateway.transport.reach import closed_by_peer

log = logging.getLogger(__name__)
dead_log = logging.getLogger("gateway.mqtt_dead_letter")
FETCH = 256  # rows read from the store at a time
ACK_EVERY = 0.2  # seconds between cursor commits while draining
RECONNECT_BASE = 1.0  # first reconnect pause (s); doubles up to ``reconnect_max``


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
        synced: Callable[[], bool] = lambda: False,
    ) -> None:
        self.cfg = cfg
        self.ident = ident
        self.on_command = on_command  # (command name, payload) for every cmd/<name> message
        self.commands_received = 0
        self.store = store
        self.clock = clock
        self.synced = synced  # the clock_synced flag of the events the sink writes
        self.published = 0
        self.provisional = 0  # alarm transitions published without a seq (a full disk)
        self._provisional_sent: set[bytes] = set()  # of those waiting now, the acknowledged
        self.refusals = Refusals()
        self.dead_lettered: dict[Lane, int] = dict.fromkeys(Lane, 0)  # rows the broker refused
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
            dead_lettered=sum(self.dead_lettered.values()),
            dead_by_lane={ln.label: n for ln, n in self.dead_lettered.items()},
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
            try:
                if self._judge(tracker, closed_by_peer(client)):
                    await asyncio.shield(self.store.settled())  # its event before its cursor
                # before the session's "offline" on a stop; the rest is sent again next time
                await asyncio.shield(self._save(tracker))
            finally:
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
        window = Window(self.cfg.max_inflight, self.cfg.telemetry_inflight)
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
                if self.refusals.narrow:
                    await window.idle()  # one row at a time: which one does the broker refuse?
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
        window: Window,
        tracker: AckTracker,
    ) -> None:
        while True:
            while not queue:
                ready.clear()
                await ready.wait()
            row = queue.popleft()
            topic, payload = render(self.ident, row)
            tracker.published = row
            try:
                await client.publish(topic, payload, qos=1, retain=row.retain, timeout=math.inf)
            finally:
                window.release(row.lane)
            tracker.acked(row)
            self.published += 1
            if self.refusals.narrow and self.refusals.acked((row.lane, row.id)):
                log.info("upstream: every suspect row went through; sending in full again")

    def _judge(self, tracker: AckTracker, by_peer: bool) -> bool:
        """Weigh how the connection ended (``gateway.sinks.refusals``); dead-letter the row the
        broker refuses, once convicted, and confirm it so the rows behind it go out. True when
        a row was dead-lettered."""
        last = tracker.published
        was_narrow = self.refusals.narrow
        loss = Loss(by_peer, tracker.pending(), None if last is None else (last.lane, last.id))
        if self.refusals.ended(loss) is not None and last is not None:
            self._dead(last)
            tracker.acked(last)
            return True
        if self.refusals.narrow and not was_narrow:
            log.warning(
                "upstream broker closed the connection again with the same row in flight:"
                " sending one row at a time to find out whether it refuses one"
            )
        return False

    def _dead(self, row: Row) -> None:
        self.dead_lettered[row.lane] += 1
        topic, payload = render(self.ident, row)
        level = logging.CRITICAL if row.lane is Lane.ALARM else logging.ERROR
        attempts = self.refusals.limit
        dead_log.log(
            level,
            "mqtt: dead-lettered %s message seq %d on %s: the broker closed the connection on"
            " each of its last %d publishes (it refuses it); the messages behind it go on",
            row.lane.label,
            row.seq,
            topic,
            attempts,
            extra={"lane": row.lane.label, "seq": row.seq, "topic": topic},
        )
        if row.topic != REFUSED_TOPIC:  # a refused report is not reported again: no loop
            wall = self.clock.wall()
            rec = refused_record(row, topic, len(payload), attempts, wall, self.synced())
            self.store.add(rec)

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
