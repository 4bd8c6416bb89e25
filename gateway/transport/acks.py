"""Manual acknowledgements: a QoS 1 message is acknowledged once what it caused is committed.

aiomqtt 2.5.1 has no manual acks: paho (2.2) sends the PUBACK as it hands a message over
(``_handle_publish``), so a message read by a process that dies before committing it is lost:
the broker has been told it arrived. paho has manual acks (``manual_ack_set(True)``, then
``ack(mid, qos)``, from its source), but aiomqtt neither passes the flag through nor exposes
``ack``, so this module reaches the paho client aiomqtt wraps (``Client._client``): the one
place that does.

Contract:
- ``manual(client)`` turns paho's automatic PUBACK off for that client (before it connects).
- ``Acks.read(message)`` is called, on the event loop, after each message was delivered;
  ``Acks.run(client)`` acknowledges them in the order they were read (MQTT 3.1.1 §4.6: PUBACKs
  in the order of the PUBLISHes) once ``settled()``, called after they were read, returns.
  Messages read while one ``settled()`` waits share the next one, so a burst costs one wait.
- A message not acknowledged when the connection ends is sent again by the broker on the next
  connect of the same persistent session (§4.4, DUP set): the caller deduplicates.
- QoS 0 messages have nothing to acknowledge.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NoReturn

import aiomqtt

Settled = Callable[[], Awaitable[None]]  # returns once everything delivered so far is committed


def manual(client: aiomqtt.Client) -> None:
    """Make ``client`` leave every PUBACK to ``Acks``."""
    client._client.manual_ack_set(True)


class Acks:
    """The messages of one connection waiting for their PUBACK, in the order read."""

    def __init__(self, settled: Settled) -> None:
        self.settled = settled
        self._waiting: deque[tuple[int, int]] = deque()  # (mid, qos)
        self._read = asyncio.Event()
        self.sent = 0  # PUBACKs sent on this connection

    def read(self, message: aiomqtt.Message) -> None:
        """``message`` was delivered; acknowledge it once ``settled``."""
        if message.qos > 0:
            self._waiting.append((message.mid, message.qos))
            self._read.set()

    async def run(self, client: aiomqtt.Client) -> NoReturn:
        """Acknowledge what was read once it is settled; until cancelled."""
        paho = client._client
        while True:
            await self._read.wait()
            self._read.clear()
            batch = list(self._waiting)
            self._waiting.clear()
            await self.settled()
            for mid, qos in batch:
                paho.ack(mid, qos)
            self.sent += len(batch)
