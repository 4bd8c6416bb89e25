"""The running parts of the daemon, each restartable on its own when its config changes.

Contract:
- A ``Component`` is a name, a stop ``stage``, a ``key`` (the JSON of the config it was
  built from) and ``run``, a coroutine function that owns its resources: it opens what it
  needs, runs until cancelled, and releases everything in its own ``finally``.
- ``Components.apply(wanted)`` compares by name and key: a component whose key changed is
  stopped and started again from the new definition, a new one is started, one no longer
  wanted is stopped, and an unchanged one keeps running untouched. Stops happen before
  starts, so a restarted component never runs twice at once (one client id, one serial port).
- Every component runs under ``supervise``: a ``TransientError`` restarts it with backoff;
  anything else fails the task group the manager was given, which stops the daemon.
- ``stop_all`` stops components by ascending ``stage`` (services, inputs, the alarm
  engine, the sinks), awaiting each stage before the next.
- Every stop has a deadline: a component that has not finished ``grace`` seconds after it was
  cancelled (it swallowed the cancellation, or its release hangs on a peer) is named in an
  ERROR, left behind and listed in ``abandoned``; the stop goes on without it. ``stop_all``
  shares one ``STOP_DEADLINE`` among its stages (each gets what is left, at least
  ``STAGE_GRACE_MIN``), so a SIGTERM is obeyed within systemd's ``TimeoutStopSec`` (10 s)
  and the store is still closed cleanly. A component left behind is no child of the task
  group (each runs in a task of its own under a guard that is), so it cannot hold the group
  open; the daemon then exits without waiting for it (``gateway.cli.main``).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from gateway.runtime.supervisor import supervise

log = logging.getLogger(__name__)

# Stop stages: what feeds the store stops first, what drains it last.
SERVICES = 0  # the local API and monitor: no acknowledgements mid-shutdown
INPUTS = 1
ALARMS = 2
SINKS = 3

STOP_DEADLINE = 6.0  # seconds for a whole ``stop_all``; systemd kills at TimeoutStopSec=10
STAGE_GRACE_MIN = 0.5  # seconds a stage gets even when the ones before it used up the deadline
GRACE = 5.0  # seconds a component stopped on its own (a reload) gets to finish


@dataclass(frozen=True)
class Component:
    """One restartable part of the daemon."""

    name: str
    stage: int
    key: str
    run: Callable[[], Awaitable[None]] = field(compare=False)


@dataclass(frozen=True)
class Changes:
    """What ``apply`` did, by component name."""

    started: list[str]
    restarted: list[str]
    stopped: list[str]

    def __bool__(self) -> bool:
        return bool(self.started or self.restarted or self.stopped)

    def summary(self) -> str:
        """``restarted sink:mqtt; started driver:door-1`` or ``nothing changed``."""
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (
                ("restarted", self.restarted),
                ("started", self.started),
                ("stopped", self.stopped),
            )
            if names
        ]
        return "; ".join(parts) or "nothing changed"


class Components:
    """The components running in one task group."""

    def __init__(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg
        self._running: dict[str, tuple[Component, asyncio.Task[None], _Grace]] = {}
        self.abandoned: list[str] = []  # components that did not finish after their stop

    @property
    def names(self) -> list[str]:
        """Names of the running components."""
        return list(self._running)

    def start(self, comp: Component) -> None:
        """Start ``comp`` (its name must not be running)."""
        assert comp.name not in self._running, comp.name
        grace = _Grace()
        task = self._tg.create_task(self._guard(comp, grace), name=comp.name)
        self._running[comp.name] = (comp, task, grace)

    async def _guard(self, comp: Component, grace: "_Grace") -> None:
        """Run ``comp`` supervised, in a task of its own; once cancelled, give it ``grace``.

        Its failure is this task's failure (the group's, as before). A component that is
        still running ``grace.seconds`` after its cancel is abandoned: named, counted, and no
        longer waited for.
        """
        loop = asyncio.get_running_loop()
        inner = loop.create_task(supervise(comp.name, comp.run), name=f"{comp.name}:run")
        try:
            await asyncio.shield(inner)
        except asyncio.CancelledError:
            inner.cancel()
            done, _ = await asyncio.wait({inner}, timeout=grace.seconds)
            if not done:
                self.abandoned.append(comp.name)
                log.error(
                    "%s did not stop within %.1f s of its cancel; stopping without it",
                    comp.name,
                    grace.seconds,
                    extra={"component": comp.name},
                )
                raise
            failed = None if inner.cancelled() else inner.exception()
            if failed is not None:
                raise failed from None  # it failed on its way out
            raise

    async def stop(self, names: Iterable[str], grace: float = GRACE) -> None:
        """Cancel the named components and wait until each has released its resources, or
        ``grace`` seconds have passed (the ones still running are then abandoned)."""
        entries = [self._running.pop(n) for n in names if n in self._running]
        for _, task, slot in entries:
            slot.seconds = grace
            task.cancel()
        # A component that fails on its way out has failed the task group already.
        await asyncio.gather(*(task for _, task, _ in entries), return_exceptions=True)

    async def apply(self, wanted: Iterable[Component]) -> Changes:
        """Make the running set equal ``wanted``; restart only what changed."""
        new = {c.name: c for c in wanted}
        gone = [n for n in self._running if n not in new]
        changed = [n for n, (c, _, _) in self._running.items() if n in new and new[n].key != c.key]
        added = [n for n in new if n not in self._running]
        await self.stop(gone + changed)
        for name in changed + added:
            self.start(new[name])
        return Changes(started=added, restarted=changed, stopped=gone)

    async def stop_all(
        self,
        before: Callable[[int], Awaitable[None]] | None = None,
        deadline: float = STOP_DEADLINE,
    ) -> None:
        """Stop every component, stage by stage; ``before(stage)`` runs ahead of each stage.

        All of it within about ``deadline`` seconds: each stage gets what is left of it (at
        least ``STAGE_GRACE_MIN``).
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        for stage in sorted({c.stage for c, _, _ in self._running.values()}):
            if before is not None:
                await before(stage)
            names = [n for n, (c, _, _) in self._running.items() if c.stage == stage]
            await self.stop(names, max(STAGE_GRACE_MIN, end - loop.time()))


class _Grace:
    """How long a component may take to finish once cancelled; set by whoever stops it."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = GRACE
