"""MQTT emergency buttons and contacts on the community's local broker -> ``ContactEvent``.

Contract:
- ``run(emit)`` runs the local broker session (``drivers.mqtt.session``: capped, jittered
  reconnect backoff, log once per outage); it returns only when cancelled. The session is
  persistent (``clean_session=False`` and a fixed client id), so the broker queues
  QoS 1 button events while we are away (up to its ``max_queued_messages``).
  Every connect subscribes every button's filter again at QoS 1 (a broker that lost its state
  has lost our subscriptions too).
- Each message is handled as paho reads it (the session's ``deliver``: nothing queues in the
  process, see ``gateway.transport.mqtt``): matched to its button and device by topic alone
  (``mapping.match``), then, if the device is within its budget (``rate_limit``, see
  ``drivers.mqtt.limit``), mapped by ``mapping.read`` (size limit, UTF-8, JSON, the button's
  mapping) and passed to ``emit`` (the pipeline, synchronously, in order of arrival) with its
  button's id as ``source``. Beyond the budget a message is mapped too, and goes on only if it
  changes the contact's state (pressed or not, per device and input) from the last event that
  went on; the rest is counted as ``rate_limited``, whatever else is wrong with it. Repeated
  event ids are the pipeline's dedup stage's business (``gateway.pipeline.dedup.Dedup``,
  persisted across restarts).
- Subscriptions: a button that lists its ``devices`` subscribes each one's own topic, so the
  broker keeps messages of ids it does not list away from the gateway (``unknown_device`` is
  then only counted for what a wildcard left by an earlier config brings); one that lists none
  subscribes its filter. QoS 0 messages shed unread while the gateway is behind are counted as
  ``shed`` (``drivers.mqtt.session``).
- Bad input never ends the loop: every reject is counted in ``rejected[reason]`` (and, given
  ``count``, as ``rejected`` of the device it names) and logged at WARNING once per
  (reason, device), with at most 200 characters of the payload.
- Anything else (a bug, ``emit`` raising) propagates. ``connected`` is set while subscribed.
- The component starts no task of its own.

- Acknowledged after the commit: with ``settled`` (the runtime's, through ``Ports``) a QoS 1
  message is acknowledged to the broker only once the alarm it raised and its event record
  are committed (``gateway.transport.acks``; aiomqtt 2.5.1 alone acknowledges as paho reads).
  A gateway that dies holding a press leaves it with the broker, which hands it to the next
  start (persistent session); the dedup memory is written only once what it remembers is
  committed (``gateway.pipeline.dedup``), so that copy raises the alarm, once.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiomqtt

from drivers.mqtt.limit import Limiter
from drivers.mqtt.mapping import REASONS, Button, Reason, Reject, match, read
from drivers.mqtt.rejects import Rejects
from drivers.mqtt.session import device_filters, local_session
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
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Resolve every mapping; raises ``ConfigError``.

        ``settled`` returns once what was emitted so far is committed; each message is
        acknowledged to the broker only then.
        """
        problems = check_buttons(buttons) or ([] if buttons else ["buttons: none configured"])
        if problems:
            raise ConfigError(problems)
        self.broker = broker
        self.client_id = client_id
        self.clock = clock or SystemClock()
        self.buttons = [Button(b, resolve_payload(b, profile_dirs)) for b in buttons]
        self._limits = {b.id: Limiter(b.rate_limit, self.clock.mono) for b in buttons}
        self._over_budget = {
            b.id: f"over its budget of {b.rate_limit.rate:g} a second, {b.rate_limit.burst} at once"
            for b in buttons
        }
        self.delivered = 0
        self._rejects = Rejects(REASONS, "button", count, log)
        self.rejected = self._rejects.counts
        filters = [
            f for b in buttons for f in device_filters(b.topic, b.device_from_topic, b.devices)
        ]
        stale = [b.topic for b in buttons]  # the wildcards the devices' own topics replace
        self._session = local_session(
            broker,
            client_id,
            filters,
            "buttons are deaf",
            settled,
            stale=stale,
            on_shed=self._rejects.shed,
        )
        self.connected = self._session.connected  # set while subscribed

    async def run(self, emit: Callable[[ContactEvent], None]) -> None:
        """Receive, map and ``emit`` button events until cancelled."""
        await self._session.run(self._serve, lambda t, p: self._handle(t, p, emit))

    async def _serve(self, client: aiomqtt.Client) -> None:
        log.info(
            "subscribed to %d button topics on local broker %s",
            len(self.buttons),
            self._session.endpoint.where,
        )
        await self._session.closed(client)

    @property
    def connects(self) -> int:
        """Sessions that got as far as subscribed."""
        return self._session.connects

    def _handle(self, topic: str, payload: bytes, emit: Callable[[ContactEvent], None]) -> None:
        """One message: match, budget, map, emit; a reject is counted and logged, never raised."""
        try:
            button, device = match(self.buttons, topic)
        except Reject as rej:
            self._reject(rej.reason, rej.device, rej.detail, topic, payload)
            return
        limiter = self._limits[button.cfg.id]
        within = limiter.admit(device)
        try:
            event = read(button, device, payload, self.clock.wall())
        except Reject as rej:
            if within:
                self._reject(rej.reason, rej.device, rej.detail, topic, payload)
            else:
                self._reject(
                    "rate_limited", device, self._over_budget[button.cfg.id], topic, payload
                )
            return
        key = (event.device, event.input)
        if not within and not limiter.changed(key, event.active):
            self._reject("rate_limited", device, self._over_budget[button.cfg.id], topic, payload)
            return
        limiter.passed(key, event.active)
        emit(event)
        self.delivered += 1

    def _reject(self, reason: Reason, device: str, detail: str, topic: str, payload: bytes) -> None:
        self._rejects.add(reason, detail, topic, payload, device)
