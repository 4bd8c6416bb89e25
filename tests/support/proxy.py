"""An MQTT-aware TCP proxy for fault injection between a client and a broker (LIBRARIES.md §3.3).

Listens on 127.0.0.1:<random>, opens one upstream connection per client connection and splits
both directions into MQTT packets, so a test can count the client's PUBLISH packets (with the
DUP flag, and copies of a message already forwarded), drop the broker's PUBACKs or CONNACKs,
abort or reset every connection without a DISCONNECT (the broker fires the will), black-hole
new connections or every byte of the existing ones, close a connection on the PUBLISH of a
message it refuses (as a broker may under MQTT 3.1.1 §3.3.5), and shape the link (a rate in bytes a
second and a one-way delay with jitter, both directions).

Link model of ``shape``: each direction is a FIFO with a bounded queue (``QUEUE`` bytes beyond
one delay's worth at the rate, like a router's): a packet leaves no earlier than its arrival
plus the delay (and never before the one ahead of it), then takes ``len / rate`` s on the
wire. A full queue stops the proxy reading that side, so TCP pushes back on the sender, as a
slow link does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

__all__ = ["CONNACK", "CONNECT", "PUBACK", "PUBLISH", "MqttProxy", "Shape", "packet_length"]

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
QUEUE = 16 * 1024  # bytes a shaped direction queues beyond rate x delay before it pushes back


def packet_length(buf: bytes | bytearray) -> int | None:
    """Length of the first complete MQTT packet in ``buf``, or None if more bytes are needed."""
    size = 0
    for i in range(1, min(len(buf), 5)):
        size |= (buf[i] & 0x7F) << (7 * (i - 1))
        if not buf[i] & 0x80:
            return i + 1 + size if len(buf) >= i + 1 + size else None
    return None


def publish_body(packet: bytes) -> bytes:
    """Topic and payload of a PUBLISH packet (MQTT 3.1.1 §3.3), without the packet id."""
    i = 1
    while packet[i] & 0x80:
        i += 1
    i += 1
    (n,) = struct.unpack_from("!H", packet, i)
    topic_end = i + 2 + n
    qos = (packet[0] >> 1) & 0x03
    return packet[i:topic_end] + packet[topic_end + (2 if qos else 0) :]


@dataclass(frozen=True, slots=True)
class Shape:
    """A slow link: ``rate`` bytes a second each way, ``delay`` ± ``jitter`` s one way."""

    rate: float
    delay: float
    jitter: float = 0.0
    seed: int = 0


class MqttProxy:
    """``async with MqttProxy(broker_host, broker_port) as proxy:``, then connect to its port."""

    host = "127.0.0.1"

    def __init__(self, upstream_host: str, upstream_port: int, *, raw: bool = False) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.raw = raw  # bytes as they come, not split into packets (TLS): nothing is counted
        self.port = 0
        self.publish_count = 0  # PUBLISH packets client -> broker
        self.dup_publish_count = 0  # ... of which had the DUP flag (resends)
        self.resent_count = 0  # ... of which repeat a topic and payload forwarded before
        self.topics: Counter[str] = Counter()  # ... by topic
        self.pubacks = 0  # PUBACKs broker -> client forwarded
        self.pubacks_with_reason = 0  # ... of which carried a reason code (MQTT 5 §3.4.2.1)
        self.dropped_pubacks = 0  # PUBACKs broker -> client swallowed by drop_pubacks(True)
        self.dropped_connacks = 0  # CONNACKs swallowed by drop_connacks(True)
        self.swallowed = 0  # packets swallowed by stall(True), both directions
        self.connections = 0  # client connections accepted (black-holed ones included)
        self.accepted_at: list[float] = []  # time.monotonic() of each accepted connection
        self.closed_at: dict[int, float] = {}  # ... and of its end, by its index in accepted_at
        self.connects = 0  # CONNECT packets forwarded to the broker
        self.resets = 0  # connections reset by reset_all()
        self.refused = 0  # connections closed on a PUBLISH refuse_publish() refuses
        self._refuse: Callable[[str, bytes], bool] | None = None
        self._seen: set[bytes] = set()  # digests of the PUBLISH bodies forwarded so far
        self._drop_pubacks = False
        self._drop_connacks = False
        self._stalled = False
        self._blocked = False
        self._closing = False
        self._shape: Shape | None = None
        self._rng = random.Random(0)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def drop_pubacks(self, on: bool) -> None:
        """Swallow (True) or forward (False) the broker's PUBACKs from now on."""
        self._drop_pubacks = on

    def refuse_publish(self, match: Callable[[str, bytes], bool] | None) -> None:
        """Refuse every PUBLISH whose ``match(topic, payload)`` is true from now on, the way
        MQTT 3.1.1 §3.3.5 lets a broker refuse one: close the network connection (both sides,
        without a word) instead of forwarding it, so no PUBACK ever comes; None forwards all."""
        self._refuse = match

    def drop_connacks(self, on: bool) -> None:
        """Swallow (True) or forward (False) the broker's CONNACKs: the CONNECT reaches the
        broker, the client never hears back (a black hole mid-handshake)."""
        self._drop_connacks = on

    def stall(self, on: bool) -> None:
        """Forward nothing (True) in either direction on every connection, open or new, and
        count what was swallowed; or forward again (False). The sockets stay open."""
        self._stalled = on

    def block(self, on: bool) -> None:
        """Black-hole new connections: accept, read and discard, never connect upstream.

        The client waits for a CONNACK until its own timeout. Established connections go on.
        """
        self._blocked = on

    def shape(self, shape: Shape | None) -> None:
        """Slow every connection down to ``shape`` from now on; None lifts it."""
        self._shape = shape
        if shape is not None:
            self._rng = random.Random(shape.seed)

    async def refuse(self, on: bool) -> None:
        """Close (True) or reopen on the same port (False) the listening socket.

        New connections get ECONNREFUSED at once. (A connection accepted and then closed
        before the CONNACK is not a fast failure for aiomqtt 2.5: it waits for its timeout.)
        """
        if on and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif not on and self._server is None:
            await self._listen(self.port)

    def abort_all(self) -> None:
        """``transport.abort()`` on both sides of every connection: no DISCONNECT is sent."""
        for transport in list(self._transports):
            transport.abort()

    def reset_all(self) -> int:
        """Reset (TCP RST: ``SO_LINGER`` 0, then close) both sides of every connection, as a
        NAT or a firewall that forgot it does; returns how many client connections it cut."""
        cut = 0
        for transport in list(self._transports):
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            cut += transport.get_extra_info("sockname", ("", 0))[1] == self.port
            transport.abort()
        self.resets += cut
        return cut

    async def flap(self, seed: int, every: tuple[float, float], duration: float) -> list[float]:
        """Reset every connection after a pause drawn from ``every`` (uniform, seeded), again
        and again for ``duration`` s; returns the ``time.monotonic()`` of each reset."""
        rng = random.Random(seed)
        end = time.monotonic() + duration
        times: list[float] = []
        while (pause := rng.uniform(*every)) < end - time.monotonic():
            await asyncio.sleep(pause)  # the fault's own schedule, not a wait for a condition
            self.reset_all()
            times.append(time.monotonic())
        return times

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> Self:
        await self._listen(0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        await self.refuse(True)
        # Handlers end by themselves once their transports are aborted. Cancelling them instead
        # would make asyncio.streams log "Exception in callback ... CancelledError".
        deadline = time.monotonic() + 5.0
        while self._tasks and time.monotonic() < deadline:
            self.abort_all()
            await asyncio.wait(set(self._tasks), timeout=0.1)
        for task in self._tasks:  # last resort: a handler stuck connecting upstream
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._transports.add(writer.transport)
        up_writer: asyncio.StreamWriter | None = None
        index = len(self.accepted_at)
        try:
            if self._closing:
                return
            self.connections += 1
            self.accepted_at.append(time.monotonic())
            if self._blocked:
                with contextlib.suppress(ConnectionError, OSError):
                    while await reader.read(65536):  # black hole until the client gives up
                        continue
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return
            self._transports.add(up_writer.transport)
            both = (writer.transport, up_writer.transport)
            await asyncio.gather(
                self._pump(reader, up_writer, both, to_broker=True),
                self._pump(up_reader, writer, both, to_broker=False),
            )
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()
                    self._transports.discard(w.transport)
            if index < len(self.accepted_at):
                self.closed_at[index] = time.monotonic()
            self._tasks.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        both: tuple[asyncio.WriteTransport, ...],
        *,
        to_broker: bool,
    ) -> None:
        buf = bytearray()
        link = _Link(writer, self)
        sender = asyncio.ensure_future(link.run())
        try:
            with contextlib.suppress(ConnectionError, OSError):  # a reset ends the connection
                while chunk := await reader.read(65536):
                    if self.raw:
                        if not self._stalled:
                            await link.put(chunk)
                        continue
                    buf += chunk
                    while (n := packet_length(buf)) is not None:
                        packet = bytes(buf[:n])
                        del buf[:n]
                        verdict = self._forward(packet, to_broker=to_broker)
                        if verdict is None:
                            return  # refused: ``finally`` closes both sides
                        if verdict:
                            await link.put(packet)
                    if sender.done():
                        break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender
            for transport in both:  # one side gone: drop the other side too, without a word
                transport.abort()

    def _forward(self, packet: bytes, *, to_broker: bool) -> bool | None:
        """Whether to forward ``packet``; None: close the connection instead (refused)."""
        if self._stalled:
            self.swallowed += 1
            return False
        kind = packet[0] >> 4
        if to_broker and kind == CONNECT:
            self.connects += 1
        elif to_broker and kind == PUBLISH:
            self.publish_count += 1
            if packet[0] & 0x08:
                self.dup_publish_count += 1
            body = publish_body(packet)
            (n,) = struct.unpack_from("!H", body)
            topic = body[2 : 2 + n].decode(errors="replace")
            self.topics[topic] += 1
            if self._refuse is not None and self._refuse(topic, body[2 + n :]):
                self.refused += 1
                return None
            digest = hashlib.blake2b(body, digest_size=16).digest()
            if digest in self._seen:
                self.resent_count += 1
            self._seen.add(digest)
        elif not to_broker and kind == PUBACK and self._drop_pubacks:
            self.dropped_pubacks += 1
            return False
        elif not to_broker and kind == CONNACK and self._drop_connacks:
            self.dropped_connacks += 1
            return False
        if not to_broker and kind == PUBACK:
            self.pubacks += 1
            self.pubacks_with_reason += len(packet) > 4  # 3.1.1: fixed header + packet id only
        return True

    def _jitter(self, shape: Shape) -> float:
        return self._rng.uniform(-shape.jitter, shape.jitter)


class _Link:
    """One direction of one connection: packets leave in order, shaped while ``shape`` is on."""

    def __init__(self, writer: asyncio.StreamWriter, proxy: MqttProxy) -> None:
        self._writer = writer
        self._proxy = proxy
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._queued = 0
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, packet: bytes) -> None:
        """Queue ``packet``; waits while the queue is full (the link pushes back)."""
        shape = self._proxy._shape
        if shape is not None:
            while self._queued > QUEUE + shape.rate * shape.delay:
                self._room.clear()
                await self._room.wait()
        self._queued += len(packet)
        self._queue.put_nowait((time.monotonic(), packet))

    async def run(self) -> None:
        """Write what is queued: at once when unshaped, else after the delay, at the rate."""
        free = 0.0  # when the wire is free again
        leave = 0.0  # when the packet ahead left the delay line
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for at, packet in batch:
                shape = self._proxy._shape
                if shape is not None:
                    leave = max(leave, at + shape.delay + self._proxy._jitter(shape))
                    free = max(free, leave, time.monotonic()) + len(packet) / shape.rate
                    await _sleep_until(free)
                self._writer.write(packet)
                self._queued -= len(packet)
                self._room.set()
            await self._writer.drain()


async def _sleep_until(when: float) -> None:
    pause = when - time.monotonic()
    if pause > 0:
        await asyncio.sleep(pause)
