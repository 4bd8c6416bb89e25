"""The session of one client on the community's local broker (buttons, doors).

``local_session`` turns the local broker's settings into a ``gateway.transport.mqtt.Session``:
it reads the password and TLS files once, and reconnects with the broker's ``reconnect_max``
as its cap. The session is persistent (``clean_session=False`` and a fixed client id: MQTT
3.1.1 §3.1.2.4), so the broker keeps our subscriptions and queues QoS 1 events while we
reconnect. Incoming messages are queued without bound: paho has already acknowledged what it
queues, so a dropped message would be a lost event; the broker's ``message_size_limit`` bounds
each one. No birth or will: devices do not watch the gateway on this broker.
"""

from collections.abc import Sequence

from gateway.config.base import read_secret
from gateway.config.mqtt_devices import LocalBrokerConfig
from gateway.transport.mqtt import Endpoint, Retry, Session

RECONNECT_BASE = 0.5  # first reconnect pause (s); doubles up to ``reconnect_max``


def local_session(
    broker: LocalBrokerConfig, client_id: str, filters: Sequence[str], down: str
) -> Session:
    """A session on ``broker`` as ``client_id`` that subscribes ``filters`` at QoS 1.

    ``down`` says what an outage means, for the log ("buttons are deaf").
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
    )
    return Session(
        endpoint,
        Retry(RECONNECT_BASE, broker.reconnect_max),
        label="local broker",
        down=down,
        subscriptions=[(f, 1) for f in filters],
    )
