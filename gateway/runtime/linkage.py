"""The fire-alarm linkage as a component: escape-route doors released while a fire alarm is open.

Contract: ``run_linkage`` is the component's ``run`` (see ``gateway.runtime.components``). It
gets the engine whose open fire alarms it watches, the dispatcher its unlocks go through
(audited), and ``hold``, which the runtime uses to show the running linkage (``None`` after).
"""

from collections.abc import Callable

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.linkage import FireLinkage
from gateway.commands.dispatch import Dispatcher
from gateway.core.clock import Clock
from gateway.core.command import UnlockDoor
from gateway.core.messages import Record


async def run_linkage(
    routes: list[str],
    fire_rules: set[str],
    engine: AlarmEngine,
    orders: Dispatcher,
    add: Callable[[Record], None],
    clock: Clock,
    synced: Callable[[], bool],
    hold: Callable[[FireLinkage | None], None],
) -> None:
    """Release ``routes`` while an alarm of ``fire_rules`` is open, until cancelled."""

    def fire_alarms() -> list[str]:
        return [a.id for a in engine.open_alarms() if a.rule in fire_rules]

    async def unlock(door: str, seconds: int, why: str) -> None:
        # the linkage audits its releases; each repeated unlock is logged only
        await orders.execute(UnlockDoor(door, seconds, why, "linkage"), audited=True)

    linkage = FireLinkage(routes, unlock, fire_alarms, add, clock, synced)
    hold(linkage)
    engine.listeners.append(linkage.wake)
    try:
        await linkage.run()
    finally:
        engine.listeners.remove(linkage.wake)
        hold(None)
