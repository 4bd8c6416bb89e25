"""MQTT emergency buttons and contacts on the community's local broker -> ``ContactEvent``.

Contract:
- ``run(emit)`` runs the local broker session (``drivers.mqtt.session``: capped, jittered
  reconnect backoff, log once per outage); it returns only when cancelled. The session is
  persistent (``clean_session=False`` and a fixed client id), so the broker queues
  QoS 1 button events while we are away (up to its ``max_queued_messages``).
  Every connect subscribes every button's filter again at QoS 1 (a broker that lost its state
  has lost our subscriptions too).
- Each message is mapped by ``mapping.parse`` (size limit, UTF-8, JSON, the button's mapping)
  and passed to ``emit`` (the pipeline, synchronously, in order of arrival) with its button's
  id as ``source``. Repeated event ids are the pipeline's dedup stage's business
  (``gateway.pipeline.dedup.Dedup``, persisted across restarts).
- Bad input never ends the loop: every reject is counted in ``rejected[reason]`` (and, given
  ``count``, as ``rejected`` of the device it names) and logged at WARNING once per
  (reason, device), with at most 200 characters of the payload.
- Anything else (a bug, ``emit`` raising) propagates. ``connected`` is set while subscribed.
- The component starts no task of its own.

Known gap (RELIABILITY.md §8, open points): aiomqtt 2.5.1 acknowledges a QoS 1 PUBLISH when
paho receives it, before ``emit`` has handed the event to the store (no manual ack; paho's
``manual_ack_set`` is not exposed). A crash of the gateway between that PUBACK and the store's
COMMIT loses that one event: the broker will not resend it. Latched or level-readable buttons
(re-published state, retained messages) narrow the gap; closing it needs manual acks.
"""

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import aiomqtt

from drivers.mqtt.mapping import REASONS, Button, Reject, parse
from drivers.mqtt.rejects import Rejects
from drivers.mqtt.session import local_session
from gateway.config.mqtt_devices import (
    LocalBrokerConfig,
    MqttButtonConfig,
    check_buttons,
    resolve_payload,
)
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError
from gateway.core.messages import ContactEvent

log = logging.getLogger(__name__)


class MqttButtons:
    """Buttons and contacts of the local broker, delivered as ``ContactEvent``."""

    name = "mqtt_buttons"

    def __init__(
        self,
        broker: LocalBrokerConfig,
        buttons: Sequence[MqttButtonConfig],
        *,
        client_id: str,
        clock: Clock | None = None,
        profile_dirs: Sequence[Path] = (),
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        """Resolve every mapping; raises ``ConfigError``."""
        problems = check_buttons(buttons) or ([] if buttons else ["buttons: none configured"])
        if problems:
            raise ConfigError(problems)
        self.broker = broker
        self.client_id = client_id
        self.clock = clock or SystemClock()
        self.buttons = [Button(b, resolve_payload(b, profile_dirs)) for b in buttons]
        self.delivered = 0
        self._rejects = Rejects(REASONS, "button", count, log)
        self.rejected = self._rejects.counts
        filters = [b.cfg.topic for b in self.buttons]
        self._session = local_session(broker, client_id, filters, "buttons are deaf")
        self.connected = self._session.connected  # set while subscribed

    async def run(self, emit: Callable[[ContactEvent], None]) -> None:
        """Receive, map and ``emit`` button events until cancelled."""
        await self._session.run(lambda client: self._serve(client, emit))

    async def _serve(self, client: aiomqtt.Client, emit: Callable[[ContactEvent], None]) -> None:
        log.info(
            "subscribed to %d button topics on local broker %s",
            len(self.buttons),
            self._session.endpoint.where,
        )
        async for message in client.messages:
            self._handle(message.topic.value, _as_bytes(message.payload), emit)

    @property
    def connects(self) -> int:
        """Sessions that got as far as subscribed."""
        return self._session.connects

    def _handle(self, topic: str, payload: bytes, emit: Callable[[ContactEvent], None]) -> None:
        """One message: map, emit; a reject is counted and logged, never raised."""
        try:
            _, event = parse(self.buttons, topic, payload, self.clock.wall())
        except Reject as rej:
            self._reject(rej, topic, payload)
            return
        emit(event)
        self.delivered += 1

    def _reject(self, rej: Reject, topic: str, payload: bytes) -> None:
        self._rejects.add(rej.reason, rej.detail, topic, payload, rej.device)


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
