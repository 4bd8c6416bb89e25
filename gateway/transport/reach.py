"""Where ``gateway.transport.mqtt`` reaches past aiomqtt 2.5.1, and why (read in its source).

Each function works around one behaviour of aiomqtt 2.5.1 that a fault test showed, through
paho's client (``aiomqtt.Client._client``) or aiomqtt's own disconnect future; nothing else in
the gateway touches either (``gateway.transport.acks`` reaches paho for manual PUBACKs).

- ``release``: a connection that is over can leave paho's socket open (F03).
- ``connect_timeout``: the TCP connect and TLS handshake run with paho's fixed 5 s (F03).
- ``unless_lost``: a call pending when the link drops waits for its whole timeout (F07).
- ``closed_by_peer``: aiomqtt says a connection ended, not who ended it (a refused publish).
"""

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiomqtt
import paho.mqtt.client as paho_client

from gateway.transport.reader import Buffered

T = TypeVar("T")


def release(client: aiomqtt.Client) -> None:
    """Close the socket of a connection that is over, if aiomqtt left it open.

    aiomqtt 2.5.1 (``Client.__aenter__``) resets its own state when the CONNACK times out but
    never closes the socket paho opened for the attempt: its reader and its ``loop_misc`` task
    stay, and the broker, once it answers, hands the session to it (F03: no unbounded FDs).
    The same holds when ``__aexit__`` cannot write its DISCONNECT. paho's ``_sock_close`` is
    what paho itself calls on a lost connection: it runs aiomqtt's ``on_socket_close`` (the
    reader and the misc task go) and closes the socket; with ``SO_LINGER`` 0 the close is a
    reset, so the CONNECT still unread in a hung broker's buffer is discarded with it rather
    than read later (it would take over the live session's client id). A client that closed
    its connection itself has no socket left: nothing to do.
    """
    paho = client._client
    sock = paho.socket()
    if sock is None:
        return
    raw = sock.sock if isinstance(sock, Buffered) else sock
    if isinstance(raw, socket.socket):  # not for a websocket wrapper
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    paho._sock_close()


def connect_timeout(client: aiomqtt.Client, seconds: float) -> None:
    """Bound the TCP connect and the TLS handshake of ``client``'s connect to ``seconds``.

    aiomqtt 2.5.1 runs paho's ``connect`` on an executor thread with no timeout of its own and
    passes no setting through; paho bounds the connect and the handshake with its
    ``connect_timeout`` (5 s), so a handshake into a black hole held the attempt, and a
    thread, that long whatever the config said. ``connect_timeout`` is a public paho property.
    """
    client._client.connect_timeout = seconds


async def unless_lost(client: aiomqtt.Client, call: Awaitable[T]) -> T:
    """Await ``call`` (a subscribe or a publish), or raise ``MqttError`` as soon as the
    connection drops.

    aiomqtt 2.5.1 completes a pending call only on its SUBACK or PUBACK or on its timeout: when
    the link drops first, the call waits out the whole timeout (``_on_disconnect`` sets the client's
    ``_disconnected`` future and leaves pending calls alone). Its own ``messages`` iterator
    watches that future for the same reason; so does this.
    """
    task = asyncio.ensure_future(call)
    lost: asyncio.Future[None] = client._disconnected
    try:
        watched: set[asyncio.Future[Any]] = {task, lost}
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
    if not task.cancelled():
        return task.result()  # the answer came, or the call failed on its own
    cause = lost.exception()  # retrieved here, or asyncio reports it as never retrieved
    raise aiomqtt.MqttError("connection lost before the broker answered") from cause


def closed_by_peer(client: aiomqtt.Client) -> bool:
    """Whether ``client``'s connection ended because its socket did: the broker's side closed
    or reset it.

    paho 2.2 reports a read of no bytes, or a read or write that failed, as
    ``MQTT_ERR_CONN_LOST``, and its own keepalive running out as ``MQTT_ERR_KEEPALIVE``; to
    aiomqtt 2.5.1's (version 2) callback it hands them as the reason codes "Unspecified error"
    and "Keep alive timeout" (``convert_disconnect_error_code_to_reason_code``), and aiomqtt
    sets its disconnect future to an ``MqttCodeError`` carrying that code. A connection the
    caller is still ending itself (a watchdog, a stop) has no result there yet.
    """
    lost: asyncio.Future[None] = client._disconnected
    if not lost.done() or lost.cancelled():
        return False
    exc = lost.exception()
    return isinstance(exc, aiomqtt.MqttCodeError) and exc.rc in _CONN_LOST


_CONN_LOST = (
    paho_client.MQTT_ERR_CONN_LOST,
    paho_client.convert_disconnect_error_code_to_reason_code(paho_client.MQTT_ERR_CONN_LOST),
)
