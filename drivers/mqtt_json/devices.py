"""Generic MQTT JSON devices on the community's local broker -> ``RawSample`` and status.

Contract:
- ``run(emit)`` runs the local broker session (``drivers.mqtt.session``: capped, jittered
  reconnect backoff, log once per outage), like ``drivers.mqtt.buttons``; it returns only
  when cancelled. The session is persistent (``clean_session=False``, a fixed client id that
  differs from the buttons' and the doors' ones). Every connect subscribes every entry's
  ``topic`` and ``status_topic`` at QoS 1 again.
- Each message is mapped by ``mapping.parse``; ``emit`` (the pipeline) gets, synchronously
  and in order of arrival: a ``DeviceStatus`` online if the device was not online, then its
  ``RawSample`` (unscaled: the pipeline's scale stage scales and judges it by the entry's
  points, as it does Modbus readings). Only configured device ids ever reach ``emit``.
- Availability (``gateway.core.liveness``): a device is online from an accepted reading or an
  online status (a heartbeat); offline from an offline status (its will), or when neither came
  for its entry's ``interval x offline_after`` seconds; each change is one ``DeviceStatus``
  (reason ``will: offline``, ``timeout: no data for N s``) and one log line. A rejected message
  keeps no device online. Timers tick every ``tick`` seconds while subscribed only; after each
  connect every device has a full timeout again (a silence we could not hear says nothing).
- Clocks: the skew of each believed device time (device minus gateway, s) is kept in
  ``skew[device]`` and given to ``gauge(device, "clock_skew_s", skew)``; a mapped time that was
  missing, unreadable or implausible counts as ``time_ignored`` of the device (``count``).
- Bad input never ends the loop: every reject is counted in ``rejected[reason]``, also as
  ``rejected`` of the device when the device is configured, and logged at WARNING once per
  (reason, device or entry) with at most 200 characters of the payload
  (``drivers.mqtt.rejects``). A message of several records counts each refused record.
  Anything else (a bug, ``emit`` raising) propagates.

Without a broker (devices that push by HTTP, ``drivers.http_push``) there is no session: the
push server calls ``handle`` (the reason of a message refused whole, or None) and runs
``timers``; ``run`` is not used.

Known gap: unlike buttons and door terminals (acknowledged once committed), a reading's QoS 1
PUBLISH is acknowledged on receipt; a crash before the store's commit loses that reading.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence

import aiomqtt

from drivers.base import Emit
from drivers.mqtt.rejects import Rejects
from drivers.mqtt.session import local_session, until_closed
from drivers.mqtt_json.mapping import REASONS, Entry, Parsed, Reject, Router, parse
from gateway.config.mqtt_devices import LocalBrokerConfig
from gateway.config.mqtt_json import MqttJsonDeviceConfig
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError
from gateway.core.liveness import Liveness
from gateway.core.messages import DeviceStatus

log = logging.getLogger(__name__)
SKEW = "clock_skew_s"
TIME_IGNORED = "time_ignored"


class JsonDevices:
    """Devices publishing JSON on the local broker, delivered as raw samples and status."""

    name = "mqtt_json"

    def __init__(
        self,
        broker: LocalBrokerConfig | None,
        entries: Sequence[MqttJsonDeviceConfig],
        *,
        client_id: str,
        clock: Clock | None = None,
        count: Callable[[str, str], None] | None = None,
        gauge: Callable[[str, str, float], None] | None = None,
        tick: float = 1.0,
    ) -> None:
        """Compile every mapping; raises ``ConfigError`` when there is none."""
        if not entries:
            raise ConfigError(["mqtt_json: none configured"])
        self.router = Router([Entry.resolve(e) for e in entries])
        self.clock = clock or SystemClock()
        self.tick = tick
        self.delivered = 0  # readings passed to emit
        self._rejects = Rejects(REASONS, "mqtt_json", count, log)
        self.rejected = self._rejects.counts
        self.skew: dict[str, float] = {}
        self._count, self._gauge = count, gauge
        now, wall = self.clock.mono(), self.clock.wall()
        self._watch = {e.id: Liveness(e.device_ids, e.timeout, now, wall) for e in entries}
        self._timeouts = {e.id: e.timeout for e in entries}
        filters = [t for e in entries for t in (e.topic, e.status_topic) if t is not None]
        self._session = (  # none for devices that push by HTTP: their server calls handle
            None
            if broker is None
            else local_session(
                broker, client_id, filters, "mqtt_json devices are deaf", on_shed=self._rejects.shed
            )
        )
        self.connected = asyncio.Event() if self._session is None else self._session.connected

    @property
    def connects(self) -> int:
        """Sessions that got as far as subscribed."""
        return 0 if self._session is None else self._session.connects

    def online(self, entry: str, device: str) -> bool | None:
        """Whether ``device`` of ``entry`` is online; None before its first message or timeout."""
        watch = self._watch.get(entry)
        return None if watch is None else watch.online(device)

    async def run(self, emit: Emit) -> None:
        """Receive, map and ``emit`` readings and availability until cancelled."""
        assert self._session is not None

        def deliver(topic: str, payload: bytes) -> None:
            self.handle(topic, payload, emit)

        await self._session.run(lambda client: self._serve(client, emit), deliver)

    async def _serve(self, client: aiomqtt.Client, emit: Emit) -> None:
        session = self._session
        assert session is not None
        now, wall = self.clock.mono(), self.clock.wall()
        for watch in self._watch.values():
            watch.resume(now, wall)
        log.info(
            "subscribed to %d mqtt_json entries on %s",
            len(self._watch),
            session.endpoint.where,
        )
        await until_closed(session, client, lambda: self.timers(emit), self.name)

    async def timers(self, emit: Emit) -> None:
        """Emit each device's timeout when due, every ``tick``, until cancelled."""
        while True:
            await asyncio.sleep(self.tick)
            now = self.clock.mono()
            for entry, watch in self._watch.items():
                silent = f"timeout: no data for {self._timeouts[entry]:g} s"
                for device, wall in watch.tick(now):
                    self._status(emit, device, False, wall, silent)

    def handle(self, topic: str, payload: bytes, emit: Emit) -> str | None:
        """One message: map, emit; a reject is counted and logged, never raised.

        Returns the reason of a message refused whole, or None (records of a message that
        were refused beside others are counted, not returned).
        """
        now, wall = self.clock.mono(), self.clock.wall()
        try:
            parsed = parse(self.router, topic, payload, wall)
        except Reject as rej:
            self._reject(rej, topic, payload)
            return rej.reason
        for refused in parsed.rejects:
            self._reject(refused, topic, payload)
        watch = self._watch[parsed.entry.cfg.id]
        status = parsed.status
        if status is not None:
            if status.online and watch.heard(status.device, now, wall):
                self._status(emit, status.device, True, wall, "ok")
            elif not status.online and watch.lost(status.device):
                self._status(emit, status.device, False, wall, "will: offline")
            return None
        self._readings(parsed, watch, now, wall, emit)
        if parsed.rejects and not parsed.readings:
            return parsed.rejects[0].reason
        return None

    def _readings(
        self, parsed: Parsed, watch: Liveness, now: float, wall: float, emit: Emit
    ) -> None:
        for reading in parsed.readings:
            device = reading.sample.device
            if watch.heard(device, now, wall):
                self._status(emit, device, True, wall, "ok")
            if reading.device_ts is not None:
                skew = round(reading.device_ts - wall, 3)
                self.skew[device] = skew
                if self._gauge is not None:
                    self._gauge(device, SKEW, skew)
            elif reading.time_ignored and self._count is not None:
                self._count(device, TIME_IGNORED)
            emit(reading.sample)
            self.delivered += 1

    def _status(self, emit: Emit, device: str, online: bool, wall: float, reason: str) -> None:
        if online:
            log.info("mqtt_json device %s online", device, extra={"device": device})
        else:
            log.warning("mqtt_json device %s offline: %s", device, reason, extra={"device": device})
        emit(DeviceStatus(device, online, wall, reason))

    def _reject(self, rej: Reject, topic: str, payload: bytes) -> None:
        self._rejects.add(rej.reason, rej.detail, topic, payload, rej.device, rej.entry)
