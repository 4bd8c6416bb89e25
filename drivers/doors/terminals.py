"""Face/QR door terminals on the community's local broker -> ``AccessEvent``; remote unlock.

Contract:
- ``run(emit)`` runs the local broker session (``drivers.mqtt.session``: capped, jittered
  reconnect backoff, log once per outage), like ``drivers.mqtt.buttons``; it returns only
  when cancelled. The session is persistent (``clean_session=False``, a fixed client id that
  must differ from the buttons' one), so the broker queues QoS 1 events while we are away.
  Every connect subscribes every event and heartbeat filter at QoS 1 again; with
  ``device_from_topic``, each configured terminal's own topics instead of the wildcards, so
  messages of unknown terminals stay at the broker (``drivers.mqtt.session``).
- Each message is handled as paho reads it (the session's ``deliver``: nothing queues in the
  process, see ``gateway.transport.mqtt``). A message of a configured terminal beyond its
  budget (``rate_limit``, ``drivers.mqtt.limit``) goes on only if it changes what the terminal
  or door did last (a heartbeat its presence, an event the kind of the door's last event);
  the rest is counted as ``rate_limited``, yet still shows the terminal is alive.
- Each message is mapped by ``mapping.match`` (the topic, once) and ``mapping.read``: face
  images and ``drop`` fields are never read; snapshot content is dropped; the person id leaves
  in ``raw_person`` only (no ``repr``), for the pipeline to pseudonymise before anything else
  sees it. ``emit`` (the pipeline) gets,
  synchronously and in order: ``terminal_online`` if the terminal was not online, then the
  event. The pipeline's stages pseudonymise it, drop a repeated event id (the door kind's
  dedup memory) and feed it to ``tracker`` (``gateway.pipeline.doors``), which derives
  ``forced`` and drops repeated forced/held-open reports. Any message of a configured
  terminal, even a rejected one, shows it is alive.
- Timers: every ``tick`` seconds while subscribed, ``terminal_offline`` (``heartbeat_timeout``
  without any message, once) and ``held_open`` (once per opening) go to ``emit`` when due. No
  timer runs while the broker is unreachable (silence then says nothing about a terminal), and
  after each connect every terminal has a full ``heartbeat_timeout`` again. A heartbeat whose
  state is an offline value (a will) makes its terminal offline at once.
- Bad input never ends the loop: every reject is counted in ``rejected[reason]`` (and, given
  ``count``, as ``rejected`` of the device it names) and logged at WARNING once per
  (reason, terminal) with the reason only, never the payload: it carries personal data.
  Anything else (a bug, ``emit`` raising) propagates.
- Without a broker (terminals that push by HTTP, ``drivers.http_push``) there is no session:
  the push server calls ``handle`` (which returns the reject reason, or None) per post and
  runs ``timers``; ``run`` is not used, and an unlock has no topic to go to.
- As an actuator, ``apply(UnlockDoor)`` is ``unlock``; ``accepts`` names the doors it drives.
- ``unlock(door, seconds, reason)`` publishes the mapping's unlock template on the terminal's
  command topic at QoS 1 and returns on the broker's PUBACK; the door is authorised in the
  tracker first (for ``max(seconds, grant_window)``), so the opening is no forced entry.
  ``UnlockRefused`` (permanent): unknown door, no command topic, bad arguments.
  ``NotConnected`` (transient): no broker session, the terminal is offline (a queued command
  would open the door later, unasked), or no PUBACK; the authorisation is then withdrawn.
- Counters: ``delivered`` (events passed to ``emit``), ``rejected[reason]``,
  ``snapshots_dropped``, ``unlocks``, ``connects``, ``tracker.suppressed``; ``skew[terminal]``
  is the last measured clock skew (s), ``online(terminal)`` its state.

Acknowledged after the commit, as for buttons (``drivers.mqtt.buttons``): with ``settled``,
a QoS 1 message is acknowledged only once what it caused (a forced door's alarm, the access
event) is committed, so a crash in between leaves it with the broker, which sends it again.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiomqtt

from drivers.doors.mapping import (
    REASONS,
    Heartbeat,
    Parsed,
    Reject,
    Terminal,
    match,
    read,
    unlock_payload,
)
from drivers.mqtt.limit import Limiter
from drivers.mqtt.session import device_filters, local_session, until_closed
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
from gateway.core.command import Order, UnlockDoor
from gateway.core.errors import ConfigError, PermanentError, TransientError

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
        broker: LocalBrokerConfig | None,
        terminals: Sequence[DoorTerminalConfig],
        *,
        client_id: str,
        clock: Clock | None = None,
        profile_dirs: Sequence[Path] = (),
        count: Callable[[str, str], None] | None = None,
        tick: float = 1.0,
        settled: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Resolve every mapping; raises ``ConfigError``. ``settled``: see the contract."""
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
        self._limits = {t.id: Limiter(t.rate_limit, self.clock.mono) for t in terminals}
        self._over_budget = {
            t.id: f"over its budget of {t.rate_limit.rate:g} a second, {t.rate_limit.burst} at once"
            for t in terminals
        }
        self.delivered = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.snapshots_dropped = 0
        self.unlocks = 0
        self.skew: dict[str, float] = {}
        self._logged: set[tuple[str, str]] = set()
        filters = [
            f
            for t in terminals
            for topic in (t.topic, t.heartbeat_topic)
            for f in device_filters(topic, t.device_from_topic, t.terminals)
        ]
        stale = [topic for t in terminals for topic in (t.topic, t.heartbeat_topic)]
        self._session = (  # none for terminals that push by HTTP: their server calls handle
            None
            if broker is None
            else local_session(
                broker,
                client_id,
                filters,
                "door terminals are deaf",
                settled,
                stale=stale,
                on_shed=self._shed,
            )
        )
        self.connected = asyncio.Event() if self._session is None else self._session.connected
        self._count = count  # a device's counter in its DeviceState, when running in the gateway
        self._doors = {d.id: (t, d) for t in self.terminals for d in t.cfg.doors}
        self.tracker = DoorTracker(
            DoorPolicy(d.id, d.held_open_after, d.grant_window) for _, d in self._doors.values()
        )
        now, wall = self.clock.mono(), self.clock.wall()
        self._watches = [
            TerminalWatch(t.cfg.terminals, t.cfg.heartbeat_timeout, now, wall)
            for t in self.terminals
        ]

    @property
    def connects(self) -> int:
        """Sessions that got as far as subscribed."""
        return 0 if self._session is None else self._session.connects

    def online(self, terminal: str) -> bool | None:
        """Whether ``terminal`` is online; None before its first message or timeout."""
        states = [w.online(terminal) for w in self._watches]
        return next((s for s in states if s is not None), None)

    async def run(self, emit: Emit) -> None:
        """Receive, map, track and ``emit`` access events until cancelled."""
        assert self._session is not None
        await self._session.run(lambda client: self._serve(client, emit), self._deliver(emit))

    def _deliver(self, emit: Emit) -> Callable[[str, bytes], None]:
        def deliver(topic: str, payload: bytes) -> None:
            self.handle(topic, payload, emit)

        return deliver

    async def _serve(self, client: aiomqtt.Client, emit: Emit) -> None:
        session = self._session
        assert session is not None
        now, wall = self.clock.mono(), self.clock.wall()
        for watch in self._watches:
            watch.resume(now, wall)
        log.info(
            "subscribed to %d door terminal configs on %s",
            len(self.terminals),
            session.endpoint.where,
        )
        await until_closed(session, client, lambda: self.timers(emit), self.name)

    async def timers(self, emit: Emit) -> None:
        """Emit ``terminal_offline`` and ``held_open`` when due, every ``tick``, until cancelled."""
        while True:
            await asyncio.sleep(self.tick)
            now = self.clock.mono()
            due = [e for watch in self._watches for e in watch.tick(now)]
            self._emit(due + self.tracker.tick(now), emit)

    def _heard(self, terminal: str, now: float, wall: float) -> list[AccessEvent]:
        return [e for watch in self._watches for e in watch.heard(terminal, now, wall)]

    def handle(self, topic: str, payload: bytes, emit: Emit) -> str | None:
        """One message: budget, map, emit; a reject is counted and logged, never raised.

        Returns the reject's reason, or None when the message went on.
        """
        now, wall = self.clock.mono(), self.clock.wall()
        try:
            parsed = self._admit(topic, payload, wall)
        except Reject as rej:
            self._reject(rej, topic)
            self._emit(self._heard(rej.device, now, wall), emit)
            return rej.reason
        msg = parsed.message
        if isinstance(msg, Heartbeat):
            if msg.terminal_ts is not None:
                self.skew[msg.terminal] = msg.terminal_ts - msg.gateway_ts
            if msg.online:
                self._emit(self._heard(msg.terminal, now, wall), emit)
            else:
                self._emit([e for w in self._watches for e in w.lost(msg.terminal, wall)], emit)
            return None
        self.snapshots_dropped += parsed.snapshot_dropped
        if msg.skew is not None:
            self.skew[msg.device] = msg.skew
        self._emit([*self._heard(msg.device, now, wall), msg], emit)
        return None

    def _admit(self, topic: str, payload: bytes, wall: float) -> Parsed:
        """What the message carries, if it goes on: within its terminal's budget, or beyond it
        a change of what the terminal or door did last (``drivers.mqtt.limit``); else
        ``Reject`` (``rate_limited`` beyond the budget, whatever else was wrong)."""
        term, device, heartbeat = match(self.terminals, topic)
        limiter = self._limits[term.cfg.id]
        if limiter.admit(device):
            parsed = read(term, device, heartbeat, payload, wall)
            limiter.passed(*_state(parsed.message))
            return parsed
        over = Reject("rate_limited", self._over_budget[term.cfg.id], device)
        try:
            parsed = read(term, device, heartbeat, payload, wall)
        except Reject:
            raise over from None
        key, state = _state(parsed.message)
        if not limiter.changed(key, state):
            raise over
        limiter.passed(key, state)
        return parsed

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

    def _shed(self, n: int) -> None:
        """QoS 0 messages shed unread while behind (``drivers.mqtt.session``): counted only."""
        self.rejected["shed"] += n

    def _reject(self, rej: Reject, topic: str) -> None:
        self.rejected[rej.reason] += 1
        if rej.device and self._count is not None:
            self._count(rej.device, "rejected")
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

    def accepts(self, order: Order) -> bool:
        """An ``UnlockDoor`` of one of these terminals' doors is ours."""
        return isinstance(order, UnlockDoor) and order.door in self._doors

    async def apply(self, order: Order) -> None:
        """Carry out an ``UnlockDoor`` (see ``unlock``)."""
        if not isinstance(order, UnlockDoor):
            raise UnlockRefused(f"door terminals cannot carry out {order.name!r}")
        await self.unlock(order.door, order.seconds, order.reason)

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
        client = None if self._session is None else self._session.client
        terminal = cfg.terminal or term.cfg.id
        if client is None or self.broker is None:
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


def _state(msg: AccessEvent | Heartbeat) -> tuple[tuple[str, str], object]:
    """The key and state a message sets, for the limiter: a heartbeat the terminal's presence,
    an event what its door did last."""
    if isinstance(msg, Heartbeat):
        return (msg.terminal, "online"), msg.online
    return (msg.device, msg.door), msg.kind
