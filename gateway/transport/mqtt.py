"""One reconnecting MQTT session, for the upstream sink and every local-broker driver.

aiomqtt 2.x has no reconnect of its own (paho runs with ``reconnect_on_failure=False``); its
``docs/reconnection.md`` re-enters a client with ``async with`` inside ``while True`` and
catches ``MqttError``. ``Session.run(serve)`` is that loop, written once.

Contract:
- One connection at a time. Each attempt makes a fresh ``aiomqtt.Client``: the will then
  carries the time of this attempt, and paho never re-sends on its own a QoS 1 message that
  timed out on an earlier link (the callers' stores re-send it; LIBRARIES.md P3).
- A connection that is over leaves no socket behind: when aiomqtt left paho's socket open (a
  CONNACK that timed out on a hung broker; a DISCONNECT it could not write) it is reset, so an
  outage of any length holds one socket at a time and an abandoned CONNECT never takes the
  session over once the broker answers again (``gateway.transport.reach.release``).
- An attempt takes at most ``Endpoint.connect_timeout`` for the TCP connect and the TLS
  handshake (paho's, 5 s when None) and then ``Endpoint.timeout`` for the CONNACK (F03).
- Pauses between attempts come from ``Retry`` (capped, jittered, exponential), which restarts
  from ``base`` once a connection has been up. The policy is a value, so a tighter one (a low
  cap) is a config change, not a new loop.
- On every connect, in this order: every subscription again (a broker that lost its state lost
  them too; a refused filter is logged at ERROR, a QoS below the asked one at WARNING); then
  the session is up: ``connected`` is set (``ever_connected`` the first time), the backoff
  restarts, ``client`` is the live client; then the retained birth ``online`` on
  ``Status.topic`` (when a ``Status`` is given) and ``serve(client)``. A link lost while the
  SUBACK or the birth's PUBACK is awaited ends the connection at once, not after
  ``Endpoint.timeout``. ``connected`` is
  cleared as soon as the connection ends.
- ``MqttError`` from ``serve`` (also inside an ``ExceptionGroup``) ends the connection; the
  loop pauses, then connects again. If ``serve`` returns, the connection is closed with
  DISCONNECT and made again after a pause the same way. Anything else propagates.
- Logging is by transition: the first failure after being up (or at start) once at WARNING,
  each recovery once at INFO; ``last_error`` keeps the text of the latest failure for health
  (only the text: the exception may pin paho's socket).
- Cancel-safe: after every await that aiomqtt runs through ``asyncio.wait_for`` (CONNACK,
  SUBACK, PUBACK) ``raise_if_cancelling`` re-raises a stop that landed as it completed
  (CPython gh-86296), and again after each connection ends (aiomqtt's ``__aexit__`` turns a
  stop into ``MqttError`` when its DISCONNECT times out), so a stop is never swallowed. On a
  stop while connected, the retained ``offline`` is published (1 s at most) before the clean
  DISCONNECT, which skips the will.
- Incoming messages: with ``deliver`` (``run(serve, deliver)``), each one is handed to
  ``deliver(topic, payload)`` synchronously, on the event loop, while paho reads it: nothing
  queues in the process, so memory stays flat however fast messages come, and a caller that
  cannot keep up slows paho's reading (TCP flow control: the broker holds the rest, up to its
  ``max_queued_messages`` for this client, and drops beyond it: mosquitto 2.0.11 then drops
  QoS 1 messages too, so a flood the caller cannot keep up with can cost a real event; see
  docs/performance.md, "A junk flood"). ``serve`` then waits in
  ``closed(client)``, which re-raises what ``deliver`` raised (the connection is dropped at
  once; the messages paho read after it are not delivered). Without ``deliver``, messages
  queue in aiomqtt without bound for ``client.messages`` (paho acknowledged them already).
- With ``settled`` (and ``deliver``), a QoS 1 message is acknowledged only once
  ``settled()``, called after it was delivered, returns: once what it caused is committed
  (``gateway.transport.acks``). A process that dies before leaves it unacknowledged, and the
  broker hands it to the next connect of the persistent session again.
- Sessions are persistent (``clean_session=False`` and a fixed client id, MQTT 3.1.1
  §3.1.2.4) unless ``Endpoint.persistent`` is False: the broker keeps subscriptions and queues
  QoS 1 messages while we are away. ``unsubscriptions`` are filters an earlier config may have
  left in that session: each connect drops them (UNSUBSCRIBE) once the subscriptions are in.
- Subscriptions go in SUBSCRIBE packets of at most ``SUBSCRIBE_BYTES`` of filters each (a
  broker refuses a packet over its ``max_packet_size``), one after the other.
- With ``Endpoint.buffered`` (plain TCP only), paho reads whole socket buffers and sheds QoS 0
  messages when ``Endpoint.shed_after`` bytes wait behind them (``gateway.transport.reader``);
  ``shed`` counts them, and ``on_shed(n)`` hears of each batch.
"""

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import aiomqtt

from gateway.config.broker import RECONNECT_MAX
from gateway.core.aio import raise_if_cancelling
from gateway.core.backoff import Backoff
from gateway.transport.acks import Acks, Settled, manual
from gateway.transport.inline import Deliver, inline_queue
from gateway.transport.reach import connect_timeout, release, unless_lost
from gateway.transport.reader import install

log = logging.getLogger(__name__)
OFFLINE_TIMEOUT = 1.0  # seconds the "offline" status may take on the way out
SUBSCRIBE_BYTES = 16384  # filter bytes per SUBSCRIBE packet, at most (local.conf: 65536 a packet)


@dataclass(frozen=True, slots=True)
class Retry:
    """Reconnect pauses: ``base * 2**n`` capped at ``cap``, less up to ``jitter`` of it.

    Jitter spreads many gateways reconnecting after a platform outage. The first alarm after a
    broker returns waits for at most one pause, so ``cap`` bounds that delay.
    """

    base: float = 0.5
    cap: float = RECONNECT_MAX
    jitter: float = 0.25

    def backoff(self) -> Backoff:
        """A fresh pause sequence."""
        return Backoff(self.base, self.cap, self.jitter)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach one broker as one client."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive: int = 30
    timeout: float = 10.0  # seconds for CONNACK, SUBACK and (by default) PUBACK
    connect_timeout: float | None = None  # TCP connect and TLS handshake; None: paho's 5 s
    max_inflight: int | None = None  # QoS 1 publishes awaiting PUBACK; None: paho's default
    persistent: bool = True
    buffered: bool = False  # whole socket buffers per read, plain TCP only (transport.reader)
    shed_after: int | None = None  # with buffered: bytes behind which QoS 0 messages are shed

    @property
    def where(self) -> str:
        """``host:port``, for logs."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Status:
    """The retained availability topic: birth ``online`` on connect, will and stop ``offline``."""

    topic: str
    payload: Callable[[str], bytes]  # state ("online" / "offline") -> payload


Serve = Callable[[aiomqtt.Client], Awaitable[None]]


class Session:
    """A reconnecting session; ``run(serve)`` until cancelled.

    Args:
        endpoint: the broker and client identity.
        retry: the reconnect pause policy.
        label: what the broker is, for logs ("upstream broker", "local broker").
        down: what being down means, for the WARNING ("buffering locally").
        subscriptions: (filter, QoS) pairs subscribed on every connect.
        unsubscriptions: filters dropped on every connect, after the subscriptions.
        status: birth and will, or None for none.
        settled: with ``deliver``, acknowledge each QoS 1 message only once ``settled()``,
            called after it was delivered, returns (``gateway.transport.acks``); None: paho
            acknowledges as it reads.
        on_shed: told how many QoS 0 messages were shed (``Endpoint.shed_after``), each time.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        retry: Retry,
        *,
        label: str,
        down: str,
        subscriptions: Sequence[tuple[str, int]] = (),
        unsubscriptions: Sequence[str] = (),
        status: Status | None = None,
        settled: Settled | None = None,
        on_shed: Callable[[int], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.retry = retry
        self.label = label
        self.down = down
        self.subscriptions = list(subscriptions)
        self.unsubscriptions = list(unsubscriptions)
        self.on_shed = on_shed
        self.shed = 0  # QoS 0 messages shed unread, over all connections
        self.status = status
        self.connected = asyncio.Event()
        self.ever_connected = asyncio.Event()
        self.connects = 0  # connections that got as far as ``serve``
        self.reconnects = 0  # connections lost or refused
        self.last_error = ""
        self.client: aiomqtt.Client | None = None  # the live client while ``connected``
        self._failing = False
        self._undelivered: asyncio.Future[None] | None = None  # what ``deliver`` raised
        self.settled = settled
        self.acks: Acks | None = None  # this connection's manual PUBACKs, with ``settled``

    def make_client(self, deliver: Deliver | None = None) -> aiomqtt.Client:
        """A new client for one connection; with ``deliver``, one that queues nothing."""
        ep = self.endpoint
        inline = None
        self.acks = None
        if deliver is not None:
            self._undelivered = asyncio.get_running_loop().create_future()
            if self.settled is not None:
                self.acks = Acks(self.settled)
            inline = inline_queue(deliver, self._undelivered, self.acks)
        will = None
        if self.status is not None:
            offline = self.status.payload("offline")
            will = aiomqtt.Will(self.status.topic, offline, qos=1, retain=True)
        client = aiomqtt.Client(
            ep.host,
            ep.port,
            identifier=ep.client_id,
            username=ep.username,
            password=ep.password,
            clean_session=not ep.persistent,
            keepalive=ep.keepalive,
            will=will,
            tls_context=ep.tls,
            timeout=ep.timeout,
            max_inflight_messages=ep.max_inflight,
            # Unbounded: paho has acknowledged what it queues, so a dropped message is lost.
            max_queued_incoming_messages=0,
            queue_type=inline,
        )
        if ep.max_inflight is not None:
            # aiomqtt warns once per publish above 10 pending calls; a full window is normal.
            client.pending_calls_threshold = 10 * ep.max_inflight + 100
        if self.acks is not None:
            manual(client)
        if ep.connect_timeout is not None:
            connect_timeout(client, ep.connect_timeout)
        if ep.buffered and ep.tls is None:
            loop = asyncio.get_running_loop()
            install(client, loop, shed_after=ep.shed_after, on_shed=self._shed)
        return client

    def _shed(self, n: int) -> None:
        self.shed += n
        if self.on_shed is not None:
            self.on_shed(n)

    async def run(self, serve: Serve, deliver: Deliver | None = None) -> NoReturn:
        """Connect, ``serve``, and connect again after every ``MqttError``, until cancelled.

        With ``deliver``, incoming messages go to it as they are read (see the contract).
        """
        backoff = self.retry.backoff()
        while True:
            client = self.make_client(deliver)
            try:
                async with client:
                    raise_if_cancelling()
                    await self._up(client, serve, backoff)
            except* aiomqtt.MqttError as group:
                self._failed(group.exceptions[0])
            finally:
                release(client)
                self.client = None
                self.connected.clear()
                self._undelivered = None
            # aiomqtt's ``__aexit__`` raises MqttError in place of a stop when its DISCONNECT
            # is not acknowledged in time (stuck behind a full socket to a hung broker): the
            # ``except*`` above took it for a lost link, and the stop was lost for good.
            raise_if_cancelling()
            self.reconnects += 1
            await asyncio.sleep(backoff.next())

    async def _up(self, client: aiomqtt.Client, serve: Serve, backoff: Backoff) -> None:
        for batch in batches(self.subscriptions):
            granted = await unless_lost(client, client.subscribe(batch))
            raise_if_cancelling()
            self._check(batch, granted)
        if self.unsubscriptions:
            await unless_lost(client, client.unsubscribe(self.unsubscriptions))
            raise_if_cancelling()
        backoff.reset()
        self.connects += 1
        self.client = client
        self.connected.set()
        self.ever_connected.set()
        self._failing = False
        log.info(
            "connected to %s %s as %s",
            self.label,
            self.endpoint.where,
            self.endpoint.client_id,
            extra={"broker": self.endpoint.where},
        )
        status = self.status
        try:
            if status is not None:
                birth = client.publish(status.topic, status.payload("online"), qos=1, retain=True)
                await unless_lost(client, birth)
                raise_if_cancelling()
            await serve(client)
        except asyncio.CancelledError:
            if status is not None:
                # Stopping: say so while the link is up (a clean DISCONNECT skips the will).
                payload = status.payload("offline")
                try:
                    await client.publish(
                        status.topic, payload, qos=1, retain=True, timeout=OFFLINE_TIMEOUT
                    )
                except aiomqtt.MqttError as exc:
                    log.warning("could not publish offline status: %s", exc)
            raise

    async def closed(self, client: aiomqtt.Client) -> None:
        """Wait while ``deliver`` gets the messages: ``MqttError`` once the connection ends,
        or what ``deliver`` raised (a bug, never taken for a lost connection)."""
        failed = self._undelivered
        if failed is None:
            raise RuntimeError("closed() serves a session run with deliver")
        ended = asyncio.ensure_future(_until_closed(client))
        watched: set[asyncio.Future[Any]] = {ended, failed}
        if self.acks is not None:  # the PUBACKs of this connection, as what they ack settles
            acking = asyncio.ensure_future(self.acks.run(client))
            acking.add_done_callback(lambda done: _fail(failed, done))
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if self.acks is not None:
                acking.cancel()
        if failed.done():
            if ended.done() and not ended.cancelled():
                ended.exception()  # the disconnect that followed; the bug is what matters
            failed.result()
        await ended  # raises the MqttError that ended the connection

    def _check(self, asked: Sequence[tuple[str, int]], granted: Sequence[object]) -> None:
        codes = [c if isinstance(c, int) else int(getattr(c, "value", 0x80)) for c in granted]
        for (topic, qos), code in zip(asked, codes, strict=False):
            if code >= 0x80:  # §3.9.3: 0x80 is a refused subscription
                log.error("%s refused subscription %r", self.label, topic)
            elif code < qos:
                log.warning(
                    "%s granted QoS %d only on %r: messages may be lost", self.label, code, topic
                )

    def _failed(self, exc: BaseException) -> None:
        self.last_error = str(exc)
        if not self._failing:  # entering the failed state, not every attempt
            self._failing = True
            log.warning(
                "%s %s unreachable: %s; %s",
                self.label,
                self.endpoint.where,
                self.last_error,
                self.down,
                extra={"broker": self.endpoint.where},
            )


def batches(subscriptions: Sequence[tuple[str, int]]) -> list[list[tuple[str, int]]]:
    """``subscriptions`` in order, cut into lists of at most ``SUBSCRIBE_BYTES`` of filters
    (each list one SUBSCRIBE packet; a filter longer than that alone in its own)."""
    out: list[list[tuple[str, int]]] = []
    size = SUBSCRIBE_BYTES
    for sub in subscriptions:
        cost = len(sub[0].encode()) + 3  # §3.8.3: length prefix, filter, QoS byte
        if size + cost > SUBSCRIBE_BYTES:
            out.append([])
            size = 0
        out[-1].append(sub)
        size += cost
    return out


async def _until_closed(client: aiomqtt.Client) -> None:
    async for _ in client.messages:  # an inline queue never yields: this waits for the end
        pass


def _fail(failed: asyncio.Future[None], acking: "asyncio.Future[Any]") -> None:
    """The acknowledging task ended: only a bug ends it (a cancel is ``closed`` leaving)."""
    if not acking.cancelled() and not failed.done():
        exc = acking.exception()
        failed.set_exception(exc if exc is not None else RuntimeError("acks ended"))
