"""The console's live feed: one watcher of the gateway, many Server-Sent-Event streams.

Contract:
- ``Hub.run()`` is one task per console. It wakes when the last-value cache changes (at most
  ``DEVICE_EVERY`` seconds apart, so a busy bus cannot flood a phone) and every ``TICK``
  seconds, and tells each subscriber what changed: ``devices`` (the views of the devices
  that changed since the previous event: the cache hands out the very same object for an
  unchanged device, so finding them costs a dict walk), ``alarms`` (the whole duty view,
  whenever an open alarm appears, changes or closes) and ``status`` (every ``STATUS_EVERY``).
- A new subscriber gets the whole picture first (every device, the duty view, the status),
  computed at the moment it joins, so nothing falls between a page's load and its stream.
- Each subscriber has a bounded queue (``QUEUE``); one that does not keep up is dropped (its
  stream ends, the page sees the lost connection and reconnects with a fresh picture): a
  stalled phone never holds memory.
- A guard's stream carries no device events (their role does not see devices).
- The hub keeps each device's last ``HISTORY`` online/offline changes it has seen, for the
  device page.
"""

import asyncio
import contextlib
import json
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.console.ports import ConsolePorts
from gateway.console.views import device_view, duty_view, status_view
from gateway.core.clock import Clock
from gateway.core.contract import iso
from gateway.core.devices import DeviceState
from gateway.core.errors import GatewayError

TICK = 0.25  # seconds between two looks at the open alarms
DEVICE_EVERY = 0.5  # seconds between two device events at most
STATUS_EVERY = 5.0  # seconds between two status events
QUEUE = 64  # events waiting for one subscriber before it is dropped
HISTORY = 20  # online/offline changes kept per device
REPORT_EVERY = 30.0  # seconds between two reads of today's response figures (a store read)


@dataclass(eq=False)  # hashed by identity: a set member
class Subscriber:
    """One open stream."""

    devices: bool  # the role sees devices
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))

    def put(self, event: str) -> bool:
        """Queue ``event``; False when the subscriber is too far behind (then dropped)."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True


def sse(kind: str, data: Any) -> str:
    """One Server-Sent Event."""
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class Hub:
    """The watcher and its subscribers (see the module docstring)."""

    def __init__(self, ports: ConsolePorts, clock: Clock) -> None:
        self.ports = ports
        self.clock = clock
        self.subscribers: set[Subscriber] = set()
        self.history: dict[str, deque[tuple[str, bool]]] = defaultdict(
            lambda: deque(maxlen=HISTORY)
        )
        self.dropped = 0  # subscribers dropped for not keeping up
        self._devices: Mapping[str, DeviceState] = {}
        self._duty: dict[str, Any] = {}
        self._duty_key: object = None
        self._alarms_seen: object = None
        self._report: dict[str, Any] = {}
        self._report_at = -REPORT_EVERY

    # -- the picture ----------------------------------------------------------------------

    def device_views(self, states: Mapping[str, DeviceState]) -> list[dict[str, Any]]:
        now = self.clock.wall()
        return [device_view(s, now) for s in states.values()]

    def duty(self) -> dict[str, Any]:
        snap = self.ports.snapshot()
        alarms = self.ports.desk.open_alarms()
        now = self.clock.wall()
        return duty_view(alarms, self._report, snap.alarms.siren, now, self.ports.rule_types)

    def status(self) -> dict[str, Any]:
        return status_view(self.ports.snapshot(), self.clock.wall())

    def subscribe(self, devices: bool) -> Subscriber:
        """A new stream, its queue holding the whole picture."""
        sub = Subscriber(devices)
        if devices:
            sub.put(sse("devices", {"all": True, "devices": self.device_views(self._devices)}))
        sub.put(sse("alarms", self._duty or self.duty()))
        sub.put(sse("status", self.status()))
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def _send(self, event: str, devices_only: bool = False) -> None:
        for sub in list(self.subscribers):
            if devices_only and not sub.devices:
                continue
            if not sub.put(event):
                self.dropped += 1
                self.subscribers.discard(sub)
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()  # room for the end-of-stream mark
                sub.queue.put_nowait(None)

    # -- watching -------------------------------------------------------------------------

    def _devices_changed(self) -> None:
        new = self.ports.devices.snapshot()
        old, self._devices = self._devices, new
        changed = {k: s for k, s in new.items() if old.get(k) is not s}
        gone = sorted(set(old) - set(new))
        for k, s in changed.items():
            before = old.get(k)
            if s.online is not None and (before is None or before.online is not s.online):
                when = s.since if s.since is not None else self.clock.wall()
                self.history[k].append((iso(when), s.online))
        if (changed or gone) and self.subscribers:
            views = self.device_views(changed)
            self._send(sse("devices", {"all": False, "devices": views, "gone": gone}), True)

    async def _alarms_changed(self) -> None:
        alarms = self.ports.desk.open_alarms()
        seen = tuple((a.id, a.state, a.tier, a.repeats, a.active, a.acked_by) for a in alarms)
        if seen != self._alarms_seen or self.clock.mono() - self._report_at >= REPORT_EVERY:
            self._alarms_seen, self._report_at = seen, self.clock.mono()
            with contextlib.suppress(GatewayError):  # the figures can wait; the alarms cannot
                since = _midnight(self.clock, self.ports.zone)
                self._report = await self.ports.desk.response_report(since)
        key = (seen, tuple(sorted(self._report.get("all", {}).items())))
        if key != self._duty_key:
            self._duty_key = key
            self._duty = self.duty()
            self._send(sse("alarms", self._duty))

    async def run(self) -> None:
        """Watch until cancelled."""
        feed = self.ports.devices
        self._devices = feed.snapshot()
        version = feed.version
        next_status = self.clock.mono() + STATUS_EVERY
        while True:
            moved = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    version = await feed.changed(version)
                    moved = True
            if moved:
                self._devices_changed()  # the history is kept whoever watches
            if self.subscribers:
                await self._alarms_changed()
                if self.clock.mono() >= next_status:
                    next_status = self.clock.mono() + STATUS_EVERY
                    self._send(sse("status", self.status()))
            if moved:  # at most one device event per DEVICE_EVERY
                await asyncio.sleep(DEVICE_EVERY)


def _midnight(clock: Clock, zone: str) -> float:
    """Wall time of the last midnight in ``zone`` (the community's clock)."""
    tz = ZoneInfo(zone)
    now = datetime.fromtimestamp(clock.wall(), tz)
    return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
