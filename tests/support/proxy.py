"""An MQTT-aware TCP proxy for fault injection between a client and a broker (LIBRARIES.md §3.3).

Listens on 127.0.0.1:<random>, opens one upstream connection per client connection and splits
both directions into MQTT packets, so a test can count the client's PUBLISH packets, drop the
broker's PUBACKs, abort every connection without a DISCONNECT (the broker fires the will) and
black-hole or refuse new connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Self

__all__ = ["PUBACK", "PUBLISH", "MqttProxy", "packet_length"]

PUBLISH = 3
PUBACK = 4


def packet_length(buf: bytes | bytearray) -> int | None:
    """Length of the first complete MQTT packet in ``buf``, or None if more bytes are needed."""
    size = 0
    for i in range(1, min(len(buf), 5)):
        size |= (buf[i] & 0x7F) << (7 * (i - 1))
        if not buf[i] & 0x80:
            return i + 1 + size if len(buf) >= i + 1 + size else None
    return None


class MqttProxy:
    """``async with MqttProxy(broker_host, broker_port) as proxy:``, then connect to its port."""

    host = "127.0.0.1"

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.publish_count = 0  # PUBLISH packets client -> broker
        self.dup_publish_count = 0  # ... of which had the DUP flag (resends)
        self.dropped_pubacks = 0  # PUBACKs broker -> client swallowed by drop_pubacks(True)
        self.connections = 0  # client connections accepted (black-holed ones included)
        self._drop_pubacks = False
        self._blocked = False
        self._closing = False
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def drop_pubacks(self, on: bool) -> None:
        """Swallow (True) or forward (False) the broker's PUBACKs from now on."""
        self._drop_pubacks = on

    def block(self, on: bool) -> None:
        """Black-hole new connections: accept, read and discard, never connect upstream.

        The client waits for a CONNACK until its own timeout. Established connections go on.
        """
        self._blocked = on

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
        try:
            if self._closing:
                return
            self.connections += 1
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
        try:
            with contextlib.suppress(ConnectionError, OSError):  # a reset ends the connection
                while chunk := await reader.read(65536):
                    buf += chunk
                    while (n := packet_length(buf)) is not None:
                        packet = bytes(buf[:n])
                        del buf[:n]
                        if self._forward(packet, to_broker=to_broker):
                            writer.write(packet)
                    await writer.drain()
        finally:
            for transport in both:  # one side gone: drop the other side too, without a word
                transport.abort()

    def _forward(self, packet: bytes, *, to_broker: bool) -> bool:
        kind = packet[0] >> 4
        if to_broker and kind == PUBLISH:
            self.publish_count += 1
            if packet[0] & 0x08:
                self.dup_publish_count += 1
        elif not to_broker and kind == PUBACK and self._drop_pubacks:
            self.dropped_pubacks += 1
            return False
        return True
