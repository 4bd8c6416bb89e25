"""A stand-in for a broker that is down: it answers every CONNECT with "server unavailable".

While a broker is stopped, a client's connect attempts are refused and leave no trace; this
listener, bound to the broker's port for the outage, counts each attempt instead, so a test
can wait for the client's backoff to reach its steady state (no fixed sleeps) and then bring
the broker back on the same port. It answers CONNACK return code 3 (MQTT 3.1.1 §3.2.2.3)
rather than hanging up: a client waits for its CONNACK timeout after a bare hang-up, which
would measure the timeout, not the backoff.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

CONNACK_UNAVAILABLE = bytes([0x20, 0x02, 0x00, 0x03])  # no session present, server unavailable


class DeadPort:
    """``async with DeadPort(port) as dead: await dead.wait_attempts(3)``."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.attempts = 0
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def _hang_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1)  # the CONNECT has begun
            writer.write(CONNACK_UNAVAILABLE)
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
        self.attempts += 1
        async with self._changed:
            self._changed.notify_all()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._hang_up, self.host, self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def wait_attempts(self, n: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until ``n`` connect attempts reached the port."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.attempts >= n)
