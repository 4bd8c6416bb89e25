"""The session of one client on the community's local broker (buttons, doors).

``local_session`` turns the local broker's settings into a ``gateway.transport.mqtt.Session``:
it reads the password and TLS files once, and reconnects with the broker's ``reconnect_max``
as its cap. The session is persistent (``clean_session=False`` and a fixed client id: MQTT
3.1.1 §3.1.2.4), so the broker keeps our subscriptions and queues QoS 1 events while we
reconnect. The drivers hand the session a ``deliver`` callback: each message is handled as paho
reads it, with no queue inside the gateway (``gateway.transport.mqtt``); the broker's
``message_size_limit`` bounds each one. No birth or will: devices do not watch the gateway on
this broker.

The local broker is where a flood comes from (fault-matrix finding 7), so its sessions keep
junk away from the gateway (docs/performance.md, "A junk flood"):
- An entry that lists its devices subscribes each one's own topic (``device_filters``), not
  its wildcard, so messages of invented ids stay at the broker; the wildcard is unsubscribed
  on every connect, in case an earlier config left it in the persistent session.
- Over plain TCP, paho reads whole socket buffers, and when ``SHED_AFTER`` bytes wait behind
  what it read, the QoS 0 messages of that read are shed unread (QoS 1 never is: presses are
  QoS 1), counted by the caller's ``on_shed`` (``gateway.transport.reader``).

``until_closed`` is the body of a driver with timers (door terminals, mqtt_json devices): the
timers run as its one child task while it waits for the connection to end.
"""

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

import aiomqtt

from gateway.config.base import read_secret
from gateway.config.mqtt_devices import LocalBrokerConfig
from gateway.transport.mqtt import Endpoint, Retry, Session

RECONNECT_BASE = 0.5  # first reconnect pause (s); doubles up to ``reconnect_max``
SHED_AFTER = 256 * 1024  # bytes waiting in the kernel past which QoS 0 messages are shed


def device_filters(topic: str, index: int | None, devices: Iterable[str]) -> list[str]:
    """The filters that get ``topic``'s messages of ``devices``: each device's own topic
    (level ``index`` of ``topic``, a ``+``, set to its id), or ``topic`` itself when no device
    is listed or no level names one."""
    ids = sorted(set(devices))
    if index is None or not ids:
        return [topic]
    levels = topic.split("/")
    return ["/".join([*levels[:index], d, *levels[index + 1 :]]) for d in ids]


def local_session(
    broker: LocalBrokerConfig,
    client_id: str,
    filters: Sequence[str],
    down: str,
    settled: Callable[[], Awaitable[None]] | None = None,
    *,
    stale: Sequence[str] = (),
    on_shed: Callable[[int], None] | None = None,
) -> Session:
    """A session on ``broker`` as ``client_id`` that subscribes ``filters`` at QoS 1.

    ``down`` says what an outage means, for the log ("buttons are deaf"). With ``settled``,
    each message is acknowledged only once ``settled()`` returns after it was delivered (the
    inputs that can raise an alarm: a press the gateway dies holding comes again). ``stale``
    filters are unsubscribed on every connect (wildcards that ``filters`` replace).
    ``on_shed(n)`` hears of QoS 0 messages shed unread (see the module docstring).
    """
    endpoint = Endpoint(
        broker.host,
        broker.effective_port,
        client_id,
        username=broker.username,
        password=read_secret(broker.password_file) if broker.password_file else None,
        tls=broker.tls.client_context() if broker.tls else None,
        keepalive=broker.keepalive,
        timeout=broker.timeout,
        buffered=True,
        shed_after=SHED_AFTER,
    )
    return Session(
        endpoint,
        Retry(RECONNECT_BASE, broker.reconnect_max),
        label="local broker",
        down=down,
        subscriptions=[(f, 1) for f in filters],
        unsubscriptions=[f for f in stale if f not in filters],
        settled=settled,
        on_shed=on_shed,
    )


async def until_closed(
    session: Session,
    client: aiomqtt.Client,
    timers: Callable[[], Coroutine[Any, Any, None]],
    name: str,
) -> None:
    """Run ``timers`` as the one child task until ``client``'s connection ends.

    The body itself waits: a TaskGroup left idle in ``__aexit__`` while a child fails stays
    cancelled on 3.11 (its ``uncancel()`` runs too early).
    """
    async with asyncio.TaskGroup() as tg:
        tg.create_task(timers(), name=f"driver:{name}:timers")
        await session.closed(client)
