"""GPIO contact inputs to ``ContactEvent``s on the event loop.

Contract:
- ``async with GpioInputs(cfg, emit, clock) as inputs:`` opens every input of one
  ``GpioDeviceConfig``; ``GpioUnavailable`` if the machine has no GPIO or a pin cannot be
  claimed, and then nothing stays open. ``__aexit__`` closes every gpiozero device and cancels
  every timer; ``emit`` is never called after it returns.
- ``emit`` runs on the event loop's thread only. gpiozero calls back on whatever thread
  delivers the edge (the lgpio alert thread, the caller of a mock ``drive_low``); the only
  bridge is ``loop.call_soon_threadsafe`` (LIBRARIES §3.6). ``emit`` must not block or raise.
- ``active`` is the alarm sense: ``(level == active_level) != (contact == "nc")``.
- Debounce is ours, not gpiozero's ``bounce_time`` (MockPin ignores it, P15; RPi.GPIO's is a
  lock-out that can swallow the release): a level is reported once it has persisted
  ``debounce`` seconds. Edges are stamped with ``clock.mono()`` on the delivering thread, and
  persistence is judged at the next edge's own stamp or by a timer at the deadline, never by
  when the loop got round to it: a stalled loop cannot turn chatter into events. An event's
  ``ts`` is the wall time the line reached the reported level.
- Start-up: each line is read once it is open. One already in the alarm state is treated as an
  edge at open time (reported after its debounce), so a press during a restart is not lost; an
  idle line emits nothing.
- Hold: once an alarm state is reported, an input with ``hold`` set emits one more event
  (``active=True, held=True``) when the line has been in it ``hold`` seconds, counted from the
  edge; a bounce shorter than the debounce does not restart the count.

The clock is read from gpiozero's threads: it must be safe to read from any thread
(``SystemClock`` and ``ManualClock`` are).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Self

from drivers.gpio.pins import InputLine, input_line, open_pin_factory
from gateway.config.gpio import GpioDeviceConfig, GpioInputConfig
from gateway.core.clock import Clock, SystemClock
from gateway.core.messages import ContactEvent

log = logging.getLogger(__name__)

Emit = Callable[[ContactEvent], None]


class Change(NamedTuple):
    """A debounced change of one input: its alarm sense, when it began, whether a long press."""

    active: bool
    ts: float
    held: bool = False


@dataclass
class Debouncer:
    """Debounce and hold of one input, driven by timestamps only (no I/O, no asyncio).

    Invariant: ``reported`` only takes a ``level`` that was stable for ``debounce`` seconds
    by the time it is judged at (an edge's stamp or ``settle``'s ``now``). Before the first
    report the input counts as idle, so an idle line never produces an event.
    """

    debounce: float
    hold: float | None = None
    reported: bool = False  # the alarm sense last reported
    level: bool = False  # the latest raw alarm sense
    since: float = 0.0  # monotonic time ``level`` was reached
    since_wall: float = 0.0  # the same instant, wall clock
    held: bool = False  # the long press of the current alarm state was reported
    _active_mono: float = field(default=0.0, init=False, repr=False)  # reported state began
    _active_wall: float = field(default=0.0, init=False, repr=False)

    def edge(self, level: bool, mono: float, wall: float) -> list[Change]:
        """The raw alarm sense is ``level`` from ``mono``; what became reportable meanwhile."""
        out = self.settle(mono)
        if level != self.level:
            self.level, self.since, self.since_wall = level, mono, wall
            out += self.settle(mono)  # reports at once when debounce is 0
        return out

    def settle(self, now: float) -> list[Change]:
        """The changes that have become stable by ``now`` (monotonic seconds)."""
        out: list[Change] = []
        if self.level != self.reported and now >= self.since + self.debounce:
            self.reported, self.held = self.level, False
            self._active_mono, self._active_wall = self.since, self.since_wall
            out.append(Change(self.level, self.since_wall))
        due = self._hold_due()
        if due is not None and self.level and now >= due:
            self.held = True
            out.append(Change(True, self._active_wall + (due - self._active_mono), held=True))
        return out

    def deadline(self) -> float | None:
        """When ``settle`` may next report something (monotonic), or None if nothing pends."""
        if self.level != self.reported:
            return self.since + self.debounce
        return self._hold_due()

    def _hold_due(self) -> float | None:
        if self.hold is None or not self.reported or self.held:
            return None
        return self._active_mono + self.hold


@dataclass(eq=False)
class _Input:
    cfg: GpioInputConfig
    line: InputLine
    debouncer: Debouncer
    timer: asyncio.TimerHandle | None = None

    def sense(self, closed: bool) -> bool:
        return closed != (self.cfg.contact == "nc")


class GpioInputs:
    """The contact inputs of one GPIO device, reported through ``emit``."""

    def __init__(self, cfg: GpioDeviceConfig, emit: Emit, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self._emit = emit
        self._clock: Clock = clock or SystemClock()
        self._inputs: dict[str, _Input] = {}
        self._stack = contextlib.ExitStack()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open = False

    def active(self, name: str) -> bool:
        """The last reported alarm sense of input ``name`` (False before any report)."""
        return self._inputs[name].debouncer.reported

    async def __aenter__(self) -> Self:
        self._loop = loop = asyncio.get_running_loop()
        factory = open_pin_factory(self.cfg.pin_factory, self.cfg.id)
        try:
            for icfg in self.cfg.inputs:
                line = input_line(factory, self.cfg.id, icfg)
                self._stack.callback(line.close)
                inp = _Input(icfg, line, Debouncer(icfg.debounce, icfg.hold))
                self._inputs[icfg.name] = inp
                line.when_activated = self._forwarder(loop, inp, closed=True)
                line.when_deactivated = self._forwarder(loop, inp, closed=False)
        except BaseException:
            self._stack.close()
            raise
        self._open = True
        # Callbacks first, then the level: an edge in between is queued behind this read.
        for inp in self._inputs.values():
            self._edge(inp, inp.line.is_active, self._clock.mono(), self._clock.wall())
        log.info("gpio device %s: %d inputs open", self.cfg.id, len(self._inputs))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        for inp in self._inputs.values():
            if inp.timer is not None:
                inp.timer.cancel()
                inp.timer = None
        self._stack.close()

    def _forwarder(
        self, loop: asyncio.AbstractEventLoop, inp: _Input, *, closed: bool
    ) -> Callable[[], None]:
        """The gpiozero callback: stamps the edge and hands it to the loop, on any thread."""
        clock = self._clock

        def forward() -> None:
            # RuntimeError: the loop closed under a late edge; there is nobody to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._edge, inp, closed, clock.mono(), clock.wall())

        return forward

    def _edge(self, inp: _Input, closed: bool, mono: float, wall: float) -> None:
        if self._open:
            self._report(inp, inp.debouncer.edge(inp.sense(closed), mono, wall))

    def _settle(self, inp: _Input) -> None:
        inp.timer = None
        if self._open:
            self._report(inp, inp.debouncer.settle(self._clock.mono()))

    def _report(self, inp: _Input, changes: list[Change]) -> None:
        """Emit ``changes`` and re-arm the input's timer for its next deadline."""
        if inp.timer is not None:
            inp.timer.cancel()
            inp.timer = None
        deadline = inp.debouncer.deadline()
        if deadline is not None and self._loop is not None:
            delay = max(0.0, deadline - self._clock.mono())
            inp.timer = self._loop.call_later(delay, self._settle, inp)
        for change in changes:
            self._emit(
                ContactEvent(
                    device=self.cfg.id,
                    input=inp.cfg.name,
                    active=change.active,
                    ts=change.ts,
                    held=change.held,
                )
            )
