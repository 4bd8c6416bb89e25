"""Run a polling driver on its schedule and track the device's availability.

Contract:
- Polls start every ``interval`` on the monotonic clock. A poll that overruns its slot skips
  the missed slots (counted in ``overruns``); polls never pile up or burst to catch up: the
  next poll starts at least half an interval after the previous one ended, so a poll held up
  on its bus (a neighbour's timeout) moves the next slot back instead of being followed by
  one right behind it (the grid keeps the new phase).
- ``offline_after`` consecutive failed polls mark the device offline: one WARNING line and one
  retained status message. An offline device is retried with capped exponential backoff
  (``interval`` doubling up to ``backoff_max``), so it seldom takes its bus's time. The first
  good poll marks it online again: one INFO line, one status message.
- The first outcome after start is always published, so the retained status is fresh.
- A ``PermanentError`` (nothing left to read) stops this poller alone, never the daemon.
- What a poll returns and every availability change go to ``emit`` (the pipeline). Counters
  (``polls``, counted as each poll ends, ``poll_failures``, ``overruns``, ``latency_sum``,
  ``last_latency``) and the driver's disabled points go to ``states``
  (``gateway.core.devices``) when one is given; the attributes of the same names stay until
  health and metrics read ``states``.
- Disabled points are synced to ``states`` after every poll (``disable``, and ``enable`` when
  the driver reads a point again), and a change of the disabled set is published like an
  availability change: a ``DeviceStatus`` listing them. A driver's ``counters`` (running
  totals, e.g. Modbus ``bad_frames``), when it has them, are added to the device's counters.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

from drivers.base import Polled, PollSchedule
from gateway.core.aio import raise_if_cancelling
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.devices import DeviceStates
from gateway.core.errors import PermanentError, TransientError
from gateway.core.items import Item
from gateway.core.messages import DeviceStatus

log = logging.getLogger(__name__)


Schedule = PollSchedule  # the name the poller's callers know


@runtime_checkable
class Counting(Protocol):
    """A driver that keeps running totals of its own (bad frames, exception codes)."""

    @property
    def counters(self) -> Mapping[str, int]: ...


class Poller:
    """One device's poll loop."""

    def __init__(
        self,
        driver: Polled,
        schedule: PollSchedule,
        emit: Callable[[Item], None],
        clock: Clock,
        states: DeviceStates | None = None,
    ) -> None:
        self.driver = driver
        self.states = states
        self.schedule = schedule
        self.emit = emit
        self.clock = clock
        self.online: bool | None = None  # None until the first outcome
        self.failures = 0  # consecutive
        self.polls = 0
        self.failed_polls = 0
        self.overruns = 0
        self.last_latency = 0.0
        self.latency_sum = 0.0  # seconds over all polls, for the metrics' average
        self._backoff = Backoff(schedule.interval, max(schedule.interval, schedule.backoff_max))
        # a runtime-checkable Protocol is slow to test (typing walks its members): once, here
        self._counting = driver if isinstance(driver, Counting) else None
        self._disabled: dict[str, str] = {}  # as last published
        self._totals: dict[str, int] = {}  # the driver's counters as last added
        self._reason = ""
        self._published = False  # a status went out for this poll's outcome

    async def run(self) -> None:
        """Poll until cancelled (or until the driver reports a permanent error)."""
        loop = asyncio.get_running_loop()
        interval = self.schedule.interval
        due = loop.time()
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            try:
                sample = await self.driver.poll()
                raise_if_cancelling()  # pymodbus waits with wait_for: a stop may be swallowed
            except PermanentError as exc:
                log.error(
                    "device %s: polling stopped: %s",
                    self.driver.id,
                    exc,
                    extra={"device": self.driver.id},
                )
                self._polled(loop.time() - started)
                self._set_online(False, str(exc))
                return
            except TransientError as exc:
                changed = self._sync_driver()
                self._failed(exc)
            else:
                changed = self._sync_driver()
                self._succeeded(sample)
            if changed and self.online is not None and not self._published:
                self._publish()
            now = loop.time()
            self._polled(now - started)
            if self.online is False:
                due = now + self._backoff.next()
                continue
            due += interval
            if due < now:
                missed = int((now - due) // interval) + 1
                self.overruns += missed
                self._count("overruns", missed)
                due += missed * interval
            due = max(due, now + interval / 2)  # never a second poll right behind a late one

    def _polled(self, latency: float) -> None:
        self.polls += 1
        self.last_latency = latency
        self.latency_sum += latency
        if self.states is not None:
            self.states.polled(self.driver.id, latency)

    def _count(self, counter: str, n: float) -> None:
        if self.states is not None:
            self.states.count(self.driver.id, counter, n)

    def _succeeded(self, sample: Item) -> None:
        self.failures = 0
        self._backoff.reset()
        self.emit(sample)
        self._set_online(True, "ok")

    def _sync_driver(self) -> bool:
        """Bring counters and disabled points to ``states``; whether the disabled set changed."""
        self._published = False
        if self._counting is not None:
            for name, total in self._counting.counters.items():
                if total != self._totals.get(name, 0):
                    self._count(name, total - self._totals.get(name, 0))
                    self._totals[name] = total
        if self.driver.disabled == self._disabled:  # compared without a copy: the usual case
            return False
        now = dict(self.driver.disabled)
        if self.states is not None:
            for point, why in now.items():
                self.states.disable(self.driver.id, point, why)
            for point in self._disabled.keys() - now.keys():
                self.states.enable(self.driver.id, point)
        self._disabled = now
        return True

    def _failed(self, exc: TransientError) -> None:
        self.failures += 1
        self.failed_polls += 1
        self._count("poll_failures", 1)
        if self.states is not None:
            self.states.error(self.driver.id, str(exc))
        if self.failures >= self.schedule.offline_after:
            self._set_online(False, str(exc))

    def _set_online(self, online: bool, reason: str) -> None:
        if self.online is online:
            return
        was = self.online
        self.online, self._reason = online, reason
        dev = self.driver.id
        if online and was is False:
            log.info("device %s is back online", dev, extra={"device": dev})
        elif not online:
            log.warning(
                "device %s is offline after %d failed polls: %s",
                dev,
                self.failures,
                reason,
                extra={"device": dev},
            )
        self._publish()

    def _publish(self) -> None:
        assert self.online is not None
        disabled = tuple(sorted(self._disabled))
        self.emit(
            DeviceStatus(self.driver.id, self.online, self.clock.wall(), self._reason, disabled)
        )
        self._published = True
