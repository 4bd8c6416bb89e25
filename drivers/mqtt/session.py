"""The client of one persistent session on the community's local broker (buttons, doors).

``LocalSession`` reads the broker's password and TLS files once; ``client()`` makes a new
aiomqtt client for each connection (aiomqtt has no reconnect of its own). The session is
persistent (``clean_session=False`` and a fixed client id: MQTT 3.1.1 §3.1.2.4), so the broker
keeps our subscriptions and queues QoS 1 events while we reconnect. Incoming messages are
queued without bound: paho has already acknowledged what it queues, so a dropped message
would be a lost event; the broker's ``message_size_limit`` bounds each one.
"""

import aiomqtt

from gateway.config.base import read_secret
from gateway.config.mqtt_devices import LocalBrokerConfig


class LocalSession:
    """How to connect to the local broker as ``client_id``."""

    def __init__(self, broker: LocalBrokerConfig, client_id: str) -> None:
        self.broker = broker
        self.client_id = client_id
        self._password = read_secret(broker.password_file) if broker.password_file else None
        self._tls = broker.tls.client_context() if broker.tls else None

    def client(self) -> aiomqtt.Client:
        """A new client for one connection."""
        return aiomqtt.Client(
            self.broker.host,
            self.broker.effective_port,
            identifier=self.client_id,
            username=self.broker.username,
            password=self._password,
            clean_session=False,
            keepalive=self.broker.keepalive,
            tls_context=self._tls,
            timeout=self.broker.timeout,
            max_queued_incoming_messages=0,
        )
