"""A Modbus TCP server that lies on purpose, for fault tests (pymodbus's own server will not).

It answers FC1-FC4 (Modbus Application Protocol v1.1b3 §6.1-6.4) from one register map shared
by every unit id, and breaks the rules where a test asks it to:

- ``exceptions[address] = code``: any read that covers ``address`` gets exception ``code``
  (0x02 ILLEGAL DATA ADDRESS for an unmapped register);
- ``miscount[address] = delta``: a read starting at ``address`` is answered with ``delta``
  registers more (or fewer) than asked for, in a frame that is otherwise well formed;
- ``silent``: requests to these unit ids are never answered (a hung device, or one that is
  gone from an RS-485 line behind a TCP gateway); the others still are.

``requests`` records every request as ``(monotonic time, unit, function, address, count)``;
``changes`` wakes ``wait_requests``. Every field may be changed while the server runs.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

READS = (1, 2, 3, 4)


@dataclass
class Request:
    """One request as the server saw it."""

    at: float
    unit: int
    function: int
    address: int
    count: int


@dataclass
class LyingServer:
    """``async with LyingServer(registers={0: 215}) as srv:`` listens on ``srv.port``."""

    registers: dict[int, int] = field(default_factory=dict)
    exceptions: dict[int, int] = field(default_factory=dict)
    miscount: dict[int, int] = field(default_factory=dict)
    silent: set[int] = field(default_factory=set)
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # the connection's reader ends, and its handler with it
        if self._handlers:
            await asyncio.wait(self._handlers)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _proto, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(length - 1)
                function, address, count = pdu[0], *struct.unpack(">HH", pdu[1:5])
                self.requests.append(Request(time.monotonic(), unit, function, address, count))
                async with self._changed:
                    self._changed.notify_all()
                if unit in self.silent:
                    continue
                answer = self._answer(function, address, count)
                writer.write(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _answer(self, function: int, address: int, count: int) -> bytes:
        if function not in READS:
            return bytes([function | 0x80, 0x01])
        for a in range(address, address + count):
            if a in self.exceptions:
                return bytes([function | 0x80, self.exceptions[a]])
        n = max(0, count + self.miscount.get(address, 0))
        values = [self.registers.get(a, 0) for a in range(address, address + n)]
        if function in (1, 2):
            data = bytearray((n + 7) // 8)
            for i, v in enumerate(values):
                if v:
                    data[i // 8] |= 1 << (i % 8)
            return bytes([function, len(data)]) + bytes(data)
        return bytes([function, 2 * n]) + b"".join(struct.pack(">H", v & 0xFFFF) for v in values)

    async def wait_requests(self, n: int, timeout: float = 10.0) -> list[Request]:  # noqa: ASYNC109
        """Until ``n`` requests arrived in all; a copy of them."""
        return await self.wait_for(lambda reqs: len(reqs) >= n, timeout)

    async def wait_for(
        self,
        cond: Callable[[list[Request]], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[Request]:
        """Until ``cond(requests)`` holds (checked on every request); a copy of them."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: cond(self.requests))
        return list(self.requests)
