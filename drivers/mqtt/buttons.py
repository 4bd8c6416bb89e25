"""MQTT emergency buttons and contacts on the community's local broker -> ``ContactEvent``.

Contract:
- ``run(emit)`` connects to the local broker and re-connects by its own loop (aiomqtt has
  none) with capped, jittered backoff that resets once subscribed; it returns only when
  cancelled. The session is persistent (``clean_session=False`` and a fixed client id), so the
  broker queues QoS 1 button events while we are away (up to its ``max_queued_messages``).
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

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import aiomqtt

from drivers.mqtt.mapping import REASONS, Button, Reject, parse
from drivers.mqtt.session import LocalSession
from gateway.config.mqtt_devices import (
    LocalBrokerConfig,
    MqttButtonConfig,
    check_buttons,
    resolve_payload,
)
from gateway.core.aio import raise_if_cancelling
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError
from gateway.core.messages import ContactEvent

log = logging.getLogger(__name__)
LOGGED_MAX = 1024  # (reason, device) pairs remembered for log-once; more are counted silently
SHOWN = 200  # payload characters a reject log shows


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
        self.connected = asyncio.Event()
        self.connects = 0  # sessions that got as far as subscribed
        self.delivered = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._logged: set[tuple[str, str]] = set()
        self._count = count  # a device's counter in its DeviceState, when running in the gateway
        self._session = LocalSession(broker, client_id)

    async def run(self, emit: Callable[[ContactEvent], None]) -> None:
        """Receive, map and ``emit`` button events until cancelled."""
        await self._connect_loop(emit)

    async def _connect_loop(self, emit: Callable[[ContactEvent], None]) -> None:
        backoff = Backoff(0.5, self.broker.reconnect_max)
        where = f"{self.broker.host}:{self.broker.effective_port}"
        failing = False
        while True:
            try:
                async with self._session.client() as client:
                    raise_if_cancelling()
                    await self._subscribe(client)
                    backoff.reset()
                    self.connects += 1
                    self.connected.set()
                    log.info(
                        "subscribed to %d button topics on local broker %s",
                        len(self.buttons),
                        where,
                    )
                    failing = False
                    async for message in client.messages:
                        self._handle(message.topic.value, _as_bytes(message.payload), emit)
            except aiomqtt.MqttError as exc:
                if not failing:  # log entering the failed state, not every attempt
                    log.warning("local broker %s unreachable: %s; buttons are deaf", where, exc)
                    failing = True
            finally:
                self.connected.clear()
            await asyncio.sleep(backoff.next())

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        granted = await client.subscribe([(b.cfg.topic, 1) for b in self.buttons])
        raise_if_cancelling()
        codes = [c if isinstance(c, int) else c.value for c in granted]
        for button, qos in zip(self.buttons, codes, strict=False):
            if qos >= 0x80:  # §3.9.3: 0x80 is a refused subscription
                log.error(
                    "local broker refused topic %r of button %s", button.cfg.topic, button.cfg.id
                )
            elif qos < 1:
                log.warning(
                    "local broker granted QoS 0 only on %r: events may be lost", button.cfg.topic
                )

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
        self.rejected[rej.reason] += 1
        if rej.device and self._count is not None:
            self._count(rej.device, "rejected")
        who = rej.device or topic[:100]
        if (rej.reason, who) in self._logged or len(self._logged) >= LOGGED_MAX:
            return
        self._logged.add((rej.reason, who))
        shown = payload[: SHOWN * 4].decode("utf-8", "replace")[:SHOWN]
        log.warning(
            "button message on %r rejected (%s): %s; further %s rejects of %s are counted,"
            " not logged; payload %r",
            topic[:100],
            rej.reason,
            rej.detail,
            rej.reason,
            who,
            shown,
            extra={"device": rej.device, "reason": rej.reason},
        )


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()
