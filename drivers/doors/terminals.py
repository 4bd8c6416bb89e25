"""Face/QR door terminals on the community's local broker -> ``AccessEvent``; remote unlock.

Contract:
- ``run(emit)`` runs the local broker session (``drivers.mqtt.session``: capped, jittered
  reconnect backoff, log once per outage), like ``drivers.mqtt.buttons``; it returns only
  when cancelled. The session is persistent (``clean_session=False``, a fixed client id that
  must differ from the buttons' one), so the broker queues QoS 1 events while we are away.
  Every connect subscribes every event and heartbeat filter at QoS 1 again.
- Each message is mapped by ``mapping.parse``: the person id is pseudonymised there, before
  anything else sees it; face images and ``drop`` fields are never read; snapshot content is
  dropped. An event id already delivered (per terminal, within ``dedup_window``, remembered in
  ``dedup_path`` across restarts, holding event ids only) is a ``duplicate``. The event then
  passes the ``DoorTracker``; ``emit`` gets, synchronously and in order: ``terminal_online``
  if the terminal was not online, the event itself (unless it repeats a forced or held-open
  report of the same opening) and a ``forced`` the tracker derived from an unauthorised
  opening. Any message of a configured terminal, even a rejected one, shows it is alive.
- Timers: every ``tick`` seconds while subscribed, ``terminal_offline`` (``heartbeat_timeout``
  without any message, once) and ``held_open`` (once per opening) go to ``emit`` when due. No
  timer runs while the broker is unreachable (silence then says nothing about a terminal), and
  after each connect every terminal has a full ``heartbeat_timeout`` again. A heartbeat whose
  state is an offline value (a will) makes its terminal offline at once.
- Bad input never ends the loop: every reject is counted in ``rejected[reason]`` and logged
  at WARNING once per (reason, terminal) with the reason only, never the payload: it carries
  personal data. Anything else (a bug, ``emit`` raising) propagates.
- ``unlock(door, seconds, reason)`` publishes the mapping's unlock template on the terminal's
  command topic at QoS 1 and returns on the broker's PUBACK; the door is authorised in the
  tracker first (for ``max(seconds, grant_window)``), so the opening is no forced entry.
  ``UnlockRefused`` (permanent): unknown door, no command topic, bad arguments.
  ``NotConnected`` (transient): no broker session, the terminal is offline (a queued command
  would open the door later, unasked), or no PUBACK; the authorisation is then withdrawn.
- Counters: ``delivered`` (events passed to ``emit``), ``rejected[reason]``,
  ``snapshots_dropped``, ``unlocks``, ``connects``, ``tracker.suppressed``; ``skew[terminal]``
  is the last measured clock skew (s), ``online(terminal)`` its state.

Known gap, as for buttons: aiomqtt acknowledges a QoS 1 PUBLISH before ``emit`` has handed the
event to the store; a crash in between loses that event.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import aiomqtt

from drivers.doors.mapping import REASONS, Heartbeat, Reject, Terminal, parse, unlock_payload
from drivers.mqtt.dedup import DedupMemory
from drivers.mqtt.session import local_session
from gateway.config.doors import (
    DoorTerminalConfig,
    check_mapping,
    check_terminals,
    resolve_door_payload,
)
from gateway.config.mqtt_devices import LocalBrokerConfig
from gateway.core.access import AccessEvent, DoorPolicy, DoorTracker, TerminalWatch
from gateway.core.aio import raise_if_cancelling
from gateway.core.clock import Clock, SystemClock
from gateway.core.errors import ConfigError, PermanentError, TransientError
from gateway.pipeline.privacy import Pseudonymiser

log = logging.getLogger(__name__)
LOGGED_MAX = 1024  # (reason, terminal) pairs remembered for log-once
MAX_UNLOCK = 3600  # seconds a door may be unlocked by one command
Emit = Callable[[AccessEvent], None]


class NotConnected(TransientError):
    """The unlock could not be delivered now (no broker session, terminal offline, no PUBACK)."""


class UnlockRefused(PermanentError):
    """The unlock can never be delivered as asked (unknown door, no command topic, bad args)."""


class DoorTerminals:
    """Door terminals of the local broker, delivered as ``AccessEvent``; unlock by door id."""

    name = "door_terminals"

    def __init__(
        self,
        broker: LocalBrokerConfig,
        terminals: Sequence[DoorTerminalConfig],
        pseudonymiser: Pseudonymiser,
        dedup_path: Path,
        *,
        client_id: str,
        clock: Clock | None = None,
        profile_dirs: Sequence[Path] = (),
        tick: float = 1.0,
    ) -> None:
        """Resolve every mapping, load the dedup memory; raises ``ConfigError``."""
        problems = check_terminals(terminals) or ([] if terminals else ["none configured"])
        if problems:
            raise ConfigError(problems)
        self.terminals = [
            Terminal.resolve(t, resolve_door_payload(t, profile_dirs)) for t in terminals
        ]
        problems = [p for t in self.terminals for p in check_mapping(t.cfg, t.mapping)]
        if problems:
            raise ConfigError(problems)
        self.broker = broker
        self.client_id = client_id
        self.clock = clock or SystemClock()
        self.tick = tick
        self.delivered = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.snapshots_dropped = 0
        self.unlocks = 0
        self.skew: dict[str, float] = {}
        self._names = pseudonymiser
        self._logged: set[tuple[str, str]] = set()
        filters = [f for t in self.terminals for f in (t.cfg.topic, t.cfg.heartbeat_topic)]
        self._session = local_session(broker, client_id, filters, "door terminals are deaf")
        self.connected = self._session.connected  # set while subscribed
        self._doors = {d.id: (t, d) for t in self.terminals for d in t.cfg.doors}
        self._config_of = {tid: t.cfg.id for t in self.terminals for tid in t.cfg.terminals}
        self.tracker = DoorTracker(
            DoorPolicy(d.id, d.held_open_after, d.grant_window) for _, d in self._doors.values()
        )
        now, wall = self.clock.mono(), self.clock.wall()
        self._watches = [
            TerminalWatch(t.cfg.terminals, t.cfg.heartbeat_timeout, now, wall)
            for t in self.terminals
        ]
        windows = {t.cfg.id: (t.cfg.dedup_window, t.cfg.dedup_size) for t in self.terminals}
        self._memory = DedupMemory(dedup_path, windows, self.clock)

    @property
    def connects(self) -> int:
        """Sessions that got as far as subscribed."""
        return self._session.connects

    def online(self, terminal: str) -> bool | None:
        """Whether ``terminal`` is online; None before its first message or timeout."""
        states = [w.online(terminal) for w in self._watches]
        return next((s for s in states if s is not None), None)

    async def run(self, emit: Emit) -> None:
        """Receive, map, dedupe, track and ``emit`` access events until cancelled."""
        try:
            await self._session.run(lambda client: self._serve(client, emit))
        finally:
            self._memory.close()

    async def _serve(self, client: aiomqtt.Client, emit: Emit) -> None:
        now, wall = self.clock.mono(), self.clock.wall()
        for watch in self._watches:
            watch.resume(now, wall)
        log.info(
            "subscribed to %d door terminal configs on %s",
            len(self.terminals),
            self._session.endpoint.where,
        )
        # The body itself pumps: a TaskGroup left idle in __aexit__ while a child
        # fails stays cancelled on 3.11 (its uncancel() runs too early).
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._timers(emit), name=f"driver:{self.name}:timers")
            await self._pump(client, emit)

    async def _pump(self, client: aiomqtt.Client, emit: Emit) -> None:
        async for message in client.messages:
            payload = message.payload
            data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            self._handle(message.topic.value, data, emit)

    async def _timers(self, emit: Emit) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = self.clock.mono()
            due = [e for watch in self._watches for e in watch.tick(now)]
            self._emit(due + self.tracker.tick(now), emit)

    def _seen(self, terminal: str, event_id: str) -> bool:
        cache = self._memory.caches[self._config_of[terminal]]
        return cache.seen((terminal, event_id, True), self.clock.wall())

    def _heard(self, terminal: str, now: float, wall: float) -> list[AccessEvent]:
        return [e for watch in self._watches for e in watch.heard(terminal, now, wall)]

    def _handle(self, topic: str, payload: bytes, emit: Emit) -> None:
        """One message: map, dedupe, track, emit; a reject is counted and logged, never raised."""
        now, wall = self.clock.mono(), self.clock.wall()
        try:
            parsed = parse(self.terminals, topic, payload, wall, self._names, self._seen)
        except Reject as rej:
            self._reject(rej, topic)
            self._emit(self._heard(rej.device, now, wall), emit)
            return
        msg = parsed.message
        if isinstance(msg, Heartbeat):
            if msg.terminal_ts is not None:
                self.skew[msg.terminal] = msg.terminal_ts - msg.gateway_ts
            if msg.online:
                self._emit(self._heard(msg.terminal, now, wall), emit)
            else:
                self._emit([e for w in self._watches for e in w.lost(msg.terminal, wall)], emit)
            return
        self.snapshots_dropped += parsed.snapshot_dropped
        if msg.skew is not None:
            self.skew[msg.device] = msg.skew
        self._emit(self._heard(msg.device, now, wall) + self.tracker.feed(msg, now), emit)
        if msg.event_id:
            key = (msg.device, msg.event_id, True)
            self._memory.caches[parsed.terminal.cfg.id].add(key, wall)
            self._memory.save_soon()

    def _emit(self, events: list[AccessEvent], emit: Emit) -> None:
        for event in events:
            if event.kind == "terminal_offline":
                log.warning(
                    "door terminal %s offline", event.device, extra={"device": event.device}
                )
            elif event.kind == "terminal_online":
                log.info("door terminal %s online", event.device, extra={"device": event.device})
            emit(event)
            self.delivered += 1

    def _reject(self, rej: Reject, topic: str) -> None:
        self.rejected[rej.reason] += 1
        who = rej.device or topic[:100]
        if (rej.reason, who) in self._logged or len(self._logged) >= LOGGED_MAX:
            return
        self._logged.add((rej.reason, who))
        log.warning(
            "door terminal message on %r rejected (%s): %s; further %s rejects of %s are"
            " counted, not logged",
            topic[:100],
            rej.reason,
            rej.detail,
            rej.reason,
            who,
            extra={"device": rej.device, "reason": rej.reason},
        )

    async def unlock(self, door: str, seconds: int, reason: str) -> None:
        """Open ``door`` for ``seconds`` by a command to its terminal; returns on PUBACK."""
        found = self._doors.get(door)
        if found is None:
            raise UnlockRefused(f"unlock: unknown door {door[:64]!r}")
        term, cfg = found
        if term.cfg.command_topic is None or term.mapping.unlock is None:
            raise UnlockRefused(f"unlock: door {door!r} has no command topic")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int)
            or not 0 < seconds <= MAX_UNLOCK
        ):
            raise UnlockRefused(f"unlock: seconds must be 1..{MAX_UNLOCK}")
        if not 0 < len(reason) <= 64 or not reason.isprintable():
            raise UnlockRefused("unlock: reason must be 1..64 printable characters")
        client = self._session.client
        terminal = cfg.terminal or term.cfg.id
        if client is None:
            raise NotConnected(f"unlock of door {door!r}: not connected to the local broker")
        if self.online(terminal) is False:
            raise NotConnected(f"unlock of door {door!r}: terminal {terminal} is offline")
        wall = self.clock.wall()
        expires = wall + term.cfg.command_ttl
        payload = unlock_payload(
            term.mapping.unlock,
            {
                "terminal": terminal,
                "door": cfg.door_ref,
                "door_id": door,
                "seconds": seconds,
                "reason": reason,
                "request_id": uuid.uuid4().hex,
                "ts": int(wall),
                "ts_ms": int(wall * 1000),
                "expires": int(expires),
                "expires_ms": int(expires * 1000),
            },
        )
        topic = term.cfg.command_topic.replace("{terminal}", terminal)
        previous = self.tracker.authorise(door, self.clock.mono(), max(seconds, cfg.grant_window))
        try:
            await client.publish(topic, payload, qos=1, timeout=self.broker.timeout)
        except aiomqtt.MqttError as exc:
            self.tracker.restore(door, previous)
            raise NotConnected(f"unlock of door {door!r} not acknowledged: {exc}") from exc
        raise_if_cancelling()
        self.unlocks += 1
        log.info(
            "door %s unlocked for %d s (%s)", door, seconds, reason, extra={"device": terminal}
        )
