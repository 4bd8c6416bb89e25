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
        self._running: dict[str, tuple[Component, asyncio.Task[None]]] = {}

    @property
    def names(self) -> list[str]:
        """Names of the running components."""
        return list(self._running)

    def start(self, comp: Component) -> None:
        """Start ``comp`` (its name must not be running)."""
        assert comp.name not in self._running, comp.name
        task = self._tg.create_task(supervise(comp.name, comp.run), name=comp.name)
        self._running[comp.name] = (comp, task)

    async def stop(self, names: Iterable[str]) -> None:
        """Cancel the named components and wait until each has released its resources."""
        tasks = [self._running.pop(n)[1] for n in names if n in self._running]
        for task in tasks:
            task.cancel()
        # A component that fails on its way out has failed the task group already.
        await asyncio.gather(*tasks, return_exceptions=True)

    async def apply(self, wanted: Iterable[Component]) -> Changes:
        """Make the running set equal ``wanted``; restart only what changed."""
        new = {c.name: c for c in wanted}
        gone = [n for n in self._running if n not in new]
        changed = [n for n, (c, _) in self._running.items() if n in new and new[n].key != c.key]
        added = [n for n in new if n not in self._running]
        await self.stop(gone + changed)
        for name in changed + added:
            self.start(new[name])
        return Changes(started=added, restarted=changed, stopped=gone)

    async def stop_all(self, before: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Stop every component, stage by stage; ``before(stage)`` runs ahead of each stage."""
        for stage in sorted({c.stage for c, _ in self._running.values()}):
            if before is not None:
                await before(stage)
            await self.stop([n for n, (c, _) in self._running.items() if c.stage == stage])
