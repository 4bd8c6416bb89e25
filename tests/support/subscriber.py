"""A recording MQTT subscriber for tests: what reached the broker, in order, and when.

``async with Recorder(host, port, "gw/#") as rec:`` returns once the QoS 1 subscription is
acknowledged. If the connection drops (broker restarted, proxy aborted), it reconnects and
subscribes again on its own; ``connects`` counts the sessions. Waiting is event driven: every
received message wakes ``wait_for`` to re-check its predicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiomqtt

__all__ = ["Received", "Recorder"]

_ids = itertools.count()


@dataclass(frozen=True)
class Received:
    """One message as the subscriber saw it; ``at`` is ``time.monotonic()`` on receipt."""

    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()


class Recorder:
    """An aiomqtt subscriber on ``topic_filter`` (QoS 1) that records every message it gets."""

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "#",
        *,
        qos: int = 1,
        identifier: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        reconnect_delay: float = 0.05,
        connect_timeout: float = 10.0,
        clean_session: bool = True,
        username: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.topic_filter = topic_filter
        self.qos = qos
        self.identifier = identifier or f"recorder-{os.getpid()}-{next(_ids)}"
        self.messages: list[Received] = []
        self.connects = 0
        self._tls_context = tls_context
        self._clean_session = clean_session
        self._username = username
        self._reconnect_delay = reconnect_delay
        self._connect_timeout = connect_timeout
        self._changed = asyncio.Condition()
        self._subscribed = asyncio.Event()
        self._last_error: aiomqtt.MqttError | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"Recorder:{self.identifier}")
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._subscribed.wait()
        except TimeoutError:
            await self._cancel()
            raise TimeoutError(
                f"recorder could not subscribe to {self.topic_filter!r} on "
                f"{self.host}:{self.port}: {self._last_error!r}"
            ) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._cancel()

    async def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # clean_session=False only pays off with a broker that persists sessions across a
        # restart; then what was published while this subscriber reconnected is queued for it.
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.identifier,
            clean_session=self._clean_session,
            username=self._username,
            tls_context=self._tls_context,
            max_queued_incoming_messages=0,  # 0 = unbounded: never drop what the broker sent
            timeout=5,
        )
        while True:
            try:
                async with client:
                    await client.subscribe(self.topic_filter, qos=self.qos)
                    self.connects += 1
                    self._subscribed.set()
                    await self._notify()
                    async for message in client.messages:
                        self.messages.append(
                            Received(
                                topic=message.topic.value,
                                payload=_payload_bytes(message.payload),
                                retain=bool(message.retain),
                                qos=message.qos,
                                at=time.monotonic(),
                            )
                        )
                        await self._notify()
            except aiomqtt.MqttError as exc:
                self._last_error = exc
            await asyncio.sleep(self._reconnect_delay)  # back off before reconnecting

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- queries ----------------------------------------------------------------------------

    def on(self, topic_prefix: str = "") -> list[Received]:
        """Messages so far whose topic starts with ``topic_prefix``."""
        return [m for m in self.messages if m.topic.startswith(topic_prefix)]

    async def wait_for(
        self,
        predicate: Callable[[Sequence[Received]], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 (it goes into the error message)
    ) -> list[Received]:
        """Wait until ``predicate(messages)`` holds; return a snapshot of all messages.

        Re-evaluated on every received message (and reconnect), never by polling. Raises
        ``TimeoutError`` naming what was received if it does not hold within ``timeout`` s.
        """
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: predicate(self.messages))
        except TimeoutError:
            raise TimeoutError(
                f"condition not met after {timeout} s; {len(self.messages)} messages: "
                f"{[(m.topic, m.payload[:60]) for m in self.messages[-10:]]} (last 10)"
            ) from None
        return list(self.messages)

    async def wait_count(
        self,
        n: int,
        topic_prefix: str = "",
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[Received]:
        """Wait until at least ``n`` messages under ``topic_prefix`` arrived; return those."""
        await self.wait_for(
            lambda msgs: sum(1 for m in msgs if m.topic.startswith(topic_prefix)) >= n, timeout
        )
        return self.on(topic_prefix)
