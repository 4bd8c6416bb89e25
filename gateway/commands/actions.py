"""What platform commands act on in a running gateway: orders through the dispatcher, status.

Contract: every method returns a small JSON-able result or raises ``ActionFailed`` with a
reason for the platform; nothing else escapes. A planned absence (``away``) goes to the welfare
monitor running now. Acknowledge, reset, unlock and silence become
orders (``gateway.core.command``) carried out by the one ``Dispatcher``; the command service
audits them with their signature, so the dispatcher only logs them. An escape route held open
by the fire linkage is never given a shorter unlock (its terminal would lock again when that
ran out).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gateway.commands.dispatch import Dispatcher, OrderFailed
from gateway.commands.service import ActionFailed
from gateway.core.command import Acknowledge, Order, Reset, Silence, UnlockDoor
from gateway.welfare.monitor import WelfareError

if TYPE_CHECKING:
    from gateway.alarms.linkage import FireLinkage
    from gateway.welfare.watch import Absence


class Absences(Protocol):
    """Where a planned absence goes: the welfare monitor (``gateway.welfare.monitor``)."""

    async def plan_absence(
        self, household: str, start: float, end: float, note: str, by: str
    ) -> "Absence": ...


class GatewayActions:
    """The ``Actions`` of one runtime."""

    def __init__(
        self,
        orders: Dispatcher,
        linkage: Callable[[], "FireLinkage | None"],
        health: Callable[[], tuple[int, dict[str, Any]]],
        absences: Callable[[], Absences | None] = lambda: None,
    ) -> None:
        self.orders = orders
        self.linkage = linkage
        self.health = health
        self.absences = absences  # the welfare monitor running now, if any

    async def _execute(self, order: Order) -> dict[str, Any]:
        try:
            return await self.orders.execute(order, audited=True)
        except OrderFailed as exc:
            raise ActionFailed(str(exc)) from None

    async def acknowledge(self, alarm_id: str, by: str) -> dict[str, Any]:
        return await self._execute(Acknowledge(alarm_id, by))

    async def reset(self, alarm_id: str, by: str) -> dict[str, Any]:
        return await self._execute(Reset(alarm_id, by))

    async def unlock(self, door: str, seconds: int, why: str) -> dict[str, Any]:
        linkage = self.linkage()
        if linkage is not None and linkage.holds(door):
            return {"door": door, "seconds": seconds, "note": "held open by the fire linkage"}
        return await self._execute(UnlockDoor(door, seconds, why, "platform"))

    async def silence(self) -> dict[str, Any]:
        return await self._execute(Silence("platform"))

    async def away(
        self, household: str, start: float, end: float, note: str, by: str
    ) -> dict[str, Any]:
        monitor = self.absences()
        if monitor is None:
            raise ActionFailed("welfare checks are not configured or not running")
        try:
            absence = await monitor.plan_absence(household, start, end, note, by)
        except WelfareError as exc:
            raise ActionFailed(str(exc)) from None
        return {"absence": absence.id, "household": household, "start": start, "end": end}

    async def status(self) -> dict[str, Any]:
        _, doc = self.health()
        return {k: doc[k] for k in ("status", "failing", "devices", "backlog", "alarms")}
