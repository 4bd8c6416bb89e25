"""Delivery as paho reads: aiomqtt's incoming queue, made to queue nothing.

``gateway.transport.mqtt.Session`` hands ``inline_queue(...)`` to aiomqtt as its
``queue_type``: aiomqtt 2.5.1 puts each message it gets from paho's ``on_message`` in that
queue, and this one's ``put_nowait`` delivers it at once instead.
"""

import asyncio
from collections.abc import Callable

import aiomqtt

from gateway.transport.acks import Acks

Deliver = Callable[[str, bytes], None]  # an incoming message (topic, payload), as paho reads it


def inline_queue(
    deliver: Deliver, failed: asyncio.Future[None], acks: Acks | None
) -> type[asyncio.Queue[aiomqtt.Message]]:
    """aiomqtt's incoming queue, made to queue nothing: ``put_nowait`` delivers the message.

    aiomqtt calls ``put_nowait`` from paho's ``on_message``, on the event loop, as each PUBLISH
    is read (aiomqtt 2.x reads with ``loop.add_reader``). A ``deliver`` that raises sets
    ``failed`` (``Session.closed`` re-raises it) and the rest is not delivered. With ``acks``,
    each message delivered waits there for its PUBACK (one that was not delivered gets none,
    so the broker sends it again on the next connect).
    """

    class Inline(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            if failed.done():
                return
            payload = item.payload
            data = payload if isinstance(payload, bytes) else _as_bytes(payload)
            try:
                deliver(item.topic.value, data)
            except Exception as exc:  # noqa: BLE001 - handed to ``closed``, which raises it
                failed.set_exception(exc)
                return
            if acks is not None:
                acks.read(item)

    return Inline


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
