"""One ``DeviceState`` per device, whatever its kind: the gateway's last-value cache.

Contract:
- ``DeviceStates`` is written by the pipeline's device-state stage (values, availability of
  streamed devices) and by the pollers (availability, poll counters, disabled points), and
  read by everything that shows devices (health, metrics, the status line, the console).
- ``snapshot()`` is an immutable mapping ``device id -> DeviceState`` of frozen values; it is
  cheap: only devices changed since the previous snapshot are copied, and an unchanged
  ``version`` returns the very same object. Readers never see a half-applied update (the
  loop is single-threaded and no method awaits).
- ``version`` goes up by one on every change; ``await changed(since)`` returns the current
  version as soon as it differs from ``since`` (a live view awaits it in a loop).
- A device appears on ``register`` (its kind, and where it is: a Modbus device's bus, the
  profile it names) or on its first message (kind ""; a button that names its device in the
  topic). Beyond ``MAX_DEVICES`` devices, updates of
  unregistered ones are ignored and counted in ``ignored``: a flood of made-up device ids
  cannot grow the cache without bound.
  ``online`` is None until the first outcome.
- ``sample`` counts each reading of quality ``bad`` (outside its point's physical range, or
  not a number) in the device's ``implausible`` counter: a sensor wired to the wrong unit id
  shows there before anyone reads its values.
- Pure bookkeeping: no I/O, no logging, no clock
  reads; every timestamp comes in with the call.
"""

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.core.messages import Quality, Sample, Value

MAX_DEVICES = 10_000
IMPLAUSIBLE = "implausible"  # the counter of readings of quality ``bad``


@dataclass(frozen=True, slots=True)
class PointState:
    """The last reading of one point."""

    value: Value | None
    unit: str
    quality: Quality
    ts: float


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the gateway knows about one device now."""

    id: str
    kind: str
    bus: str | None  # the bus a Modbus device hangs on; None for other kinds
    profile: str | None  # the profile its config names, if any
    online: bool | None  # None until the first outcome
    since: float | None  # wall time of the last availability change
    reason: str  # why it is offline, or "ok"
    points: Mapping[str, PointState]
    disabled: Mapping[str, str]  # point -> why it was disabled
    counters: Mapping[str, float]  # polls, poll_failures, implausible, latency_sum, rejected...
    last_error: str


@dataclass
class _Device:
    kind: str
    bus: str | None = None
    profile: str | None = None
    online: bool | None = None
    since: float | None = None
    reason: str = ""
    points: dict[str, PointState] = field(default_factory=dict)
    disabled: dict[str, str] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    last_error: str = ""


class DeviceStates:
    """Every device's state, with a version and a change notification."""

    def __init__(self) -> None:
        self.version = 0
        self._devices: dict[str, _Device] = {}
        self._frozen: dict[str, DeviceState] = {}
        self._dirty: set[str] = set()
        self._snapshot: Mapping[str, DeviceState] = MappingProxyType({})
        self._snapshot_version = 0
        self._event: asyncio.Event | None = None  # made when someone waits in ``changed``
        self.ignored = 0  # updates of unregistered devices beyond MAX_DEVICES

    def _get(self, device: str, *, register: bool = False) -> _Device:
        dev = self._devices.get(device)
        if dev is None:
            if len(self._devices) >= MAX_DEVICES and not register:
                self.ignored += 1
                return _Device("")  # not kept
            dev = self._devices[device] = _Device("")
        return dev

    def _bump(self, device: str) -> None:
        self._dirty.add(device)
        self._wake()

    def _wake(self) -> None:
        self.version += 1
        if self._event is not None:  # a poll bumps several times: wake waiters, make no event
            self._event.set()
            self._event = None

    def register(
        self, device: str, kind: str, bus: str | None = None, profile: str | None = None
    ) -> None:
        """Make ``device`` known: its ``kind``, its ``bus`` and ``profile`` (idempotent)."""
        dev = self._get(device, register=True)
        if (dev.kind, dev.bus, dev.profile) != (kind, bus, profile):
            dev.kind, dev.bus, dev.profile = kind, bus, profile
            self._bump(device)

    def forget(self, device: str) -> None:
        """Drop ``device`` (it is no longer configured)."""
        if self._devices.pop(device, None) is not None:
            self._frozen.pop(device, None)
            self._dirty.discard(device)
            self._wake()

    def availability(self, device: str, online: bool, ts: float, reason: str) -> None:
        """``device`` went online or offline at wall time ``ts``; ``reason`` says why."""
        dev = self._get(device)
        if dev.online is not online:
            dev.since = ts
        dev.online, dev.reason = online, reason
        if not online:
            dev.last_error = reason
        self._bump(device)

    def sample(self, sample: Sample) -> None:
        """The readings of one poll or message become the points' last values; each reading
        of quality ``bad`` adds one to the device's ``implausible`` counter."""
        dev = self._get(sample.device)
        bad = 0
        for r in sample.readings:
            dev.points[r.name] = PointState(r.value, r.unit, r.quality, sample.ts)
            bad += r.quality is Quality.BAD
        if bad:
            dev.counters[IMPLAUSIBLE] = dev.counters.get(IMPLAUSIBLE, 0) + bad
        self._bump(sample.device)

    def disable(self, device: str, point: str, reason: str) -> None:
        """``point`` of ``device`` is read no more, because of ``reason`` (idempotent)."""
        dev = self._get(device)
        if dev.disabled.get(point) == reason:
            return
        dev.disabled[point] = reason
        dev.points.pop(point, None)
        self._bump(device)

    def enable(self, device: str, point: str) -> None:
        """``point`` of ``device`` is read again (idempotent)."""
        dev = self._get(device)
        if dev.disabled.pop(point, None) is not None:
            self._bump(device)

    def count(self, device: str, counter: str, n: float = 1) -> None:
        """Add ``n`` to one of ``device``'s counters."""
        counters = self._get(device).counters
        counters[counter] = counters.get(counter, 0) + n
        self._bump(device)

    def polled(self, device: str, latency: float) -> None:
        """One poll of ``device`` ended after ``latency`` seconds: ``polls``, ``latency_sum``
        and ``last_latency`` in one update (a poller's per-poll bookkeeping)."""
        counters = self._get(device).counters
        counters["polls"] = counters.get("polls", 0) + 1
        counters["latency_sum"] = counters.get("latency_sum", 0) + latency
        counters["last_latency"] = latency
        self._bump(device)

    def set(self, device: str, counter: str, value: float) -> None:
        """Set a gauge-like counter (the last poll's latency)."""
        self._get(device).counters[counter] = value
        self._bump(device)

    def error(self, device: str, text: str) -> None:
        """Remember ``device``'s last error."""
        self._get(device).last_error = text
        self._bump(device)

    def snapshot(self) -> Mapping[str, DeviceState]:
        """An immutable view of every device now (see the module docstring)."""
        if self._snapshot_version == self.version:
            return self._snapshot
        for device in self._dirty:
            dev = self._devices.get(device)
            if dev is None:
                continue
            self._frozen[device] = DeviceState(
                device,
                dev.kind,
                dev.bus,
                dev.profile,
                dev.online,
                dev.since,
                dev.reason,
                MappingProxyType(dict(dev.points)),
                MappingProxyType(dict(dev.disabled)),
                MappingProxyType(dict(dev.counters)),
                dev.last_error,
            )
        self._dirty.clear()
        self._snapshot = MappingProxyType({d: self._frozen[d] for d in self._devices})
        self._snapshot_version = self.version
        return self._snapshot

    def availability_of(self, kinds: Collection[str] | None = None) -> dict[str, str]:
        """``online`` / ``offline`` / ``unknown`` per device (of ``kinds`` only, if given).

        What health and the status line report; ``kinds=("modbus",)`` gives what they showed
        when they read the pollers.
        """
        return {
            d: "unknown" if s.online is None else ("online" if s.online else "offline")
            for d, s in self.snapshot().items()
            if kinds is None or s.kind in kinds
        }

    async def changed(self, since: int) -> int:
        """The current version, as soon as it differs from ``since``."""
        while self.version == since:
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()
        return self.version
