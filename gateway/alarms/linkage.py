"""Fire linkage: while a fire alarm is open, escape-route doors are held released.

Contract:
- ``run()`` checks on every alarm change (``wake``) and every ``repeat`` seconds. While any
  alarm of a fire rule is open (raised, notified or acknowledged: until it is reset), every
  escape-route door is sent an unlock for ``hold`` seconds, again every ``repeat`` seconds
  (``repeat < hold``), so a terminal that restarted or missed one is released again and none
  ever locks in between.
- Releasing and restoring are audited (``audit`` record, event lane, and the log); a door
  that cannot be reached is logged once per fire and retried on the next round.
- ``holds(door)`` tells the command channel that a door is held by the linkage: a platform
  unlock must not shorten it (nothing here ever locks a door; the terminals lock themselves
  when the last unlock runs out, ``hold`` seconds after the fire alarm is reset).
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.core.clock import Clock
from gateway.core.errors import GatewayError
from gateway.core.messages import Lane, Record

log = logging.getLogger(__name__)


class Unlocker(Protocol):
    def __call__(self, door: str, seconds: int, why: str) -> Awaitable[None]: ...


class FireLinkage:
    """Holds escape routes open while ``fire_alarms()`` names an open fire alarm."""

    def __init__(
        self,
        routes: Sequence[str],
        unlock: Unlocker,
        fire_alarms: Callable[[], list[str]],
        add: Callable[[Record], None],
        clock: Clock,
        synced: Callable[[], bool],
        *,
        hold: int = 60,
        repeat: float = 20.0,
    ) -> None:
        assert repeat < hold, "a door would lock between two unlocks"
        self.routes = list(routes)
        self.unlock = unlock
        self.fire_alarms = fire_alarms
        self.add = add
        self.clock = clock
        self.synced = synced
        self.hold = hold
        self.repeat = repeat
        self.active = False
        self.unlocks_sent = 0
        self._wake = asyncio.Event()
        self._failing: set[str] = set()

    def wake(self) -> None:
        """An alarm changed: look again now."""
        self._wake.set()

    def holds(self, door: str) -> bool:
        """Whether ``door`` is held released by the linkage right now."""
        return self.active and door in self.routes

    async def run(self) -> None:
        """Check and release until cancelled."""
        while True:
            fires = self.fire_alarms()
            if fires and not self.active:
                self.active = True
                self._failing.clear()
                self._audit("released", f"fire alarm {', '.join(fires)}: escape routes released")
            elif not fires and self.active:
                self.active = False
                self._audit(
                    "restored",
                    f"fire alarms reset: escape routes lock again within {self.hold} s",
                )
            if self.active:
                await self._release(fires)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.repeat if self.active else None)

    async def _release(self, fires: list[str]) -> None:
        why = f"fire linkage ({', '.join(fires)})"
        for door in self.routes:
            try:
                await self.unlock(door, self.hold, why)
            except GatewayError as exc:
                if door not in self._failing:
                    self._failing.add(door)
                    log.error("fire linkage: cannot release escape route %s: %s", door, exc)
                continue
            self.unlocks_sent += 1
            if door in self._failing:
                self._failing.discard(door)
                log.warning("fire linkage: escape route %s released again", door)

    def _audit(self, outcome: str, detail: str) -> None:
        log.warning("fire linkage: %s", detail, extra={"outcome": outcome})
        body = {
            "kind": "linkage",
            "command_id": None,
            "name": "fire",
            "outcome": outcome,
            "detail": detail[:300],
            "authenticated": True,
            "doors": self.routes,
        }
        self.add(Record(Lane.EVENT, "audit", self.clock.wall(), self.synced(), fields=body))
