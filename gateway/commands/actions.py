"""What platform commands act on in a running gateway: alarms, doors, the siren, status.

Contract: every method returns a small JSON-able result or raises ``ActionFailed`` with a
reason for the platform; nothing else escapes. Door unlocks go through the door terminals'
own connection; an escape route held open by the fire linkage is never given a shorter
unlock (its terminal would lock again when that ran out).
"""

from typing import TYPE_CHECKING, Any

from gateway.alarms.lifecycle import LifecycleError
from gateway.commands.service import ActionFailed
from gateway.core.errors import GatewayError
from gateway.ops.health import health

if TYPE_CHECKING:
    from gateway.alarms.engine import AlarmEngine
    from gateway.runtime.root import Runtime


class GatewayActions:
    """The ``Actions`` of one runtime."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt

    def _engine(self) -> "AlarmEngine":
        engine = self.rt.alarms
        if engine is None or not engine.ready.is_set():
            raise ActionFailed("the alarm engine is starting; try again")
        return engine

    async def acknowledge(self, alarm_id: str, by: str) -> dict[str, Any]:
        try:
            transitions = await self._engine().acknowledge(alarm_id, by)
        except LifecycleError as exc:
            raise ActionFailed(str(exc)) from None
        return {"alarm_id": alarm_id, "changed": bool(transitions)}

    async def reset(self, alarm_id: str, by: str) -> dict[str, Any]:
        try:
            await self._engine().reset(alarm_id, by)
        except LifecycleError as exc:
            raise ActionFailed(str(exc)) from None
        return {"alarm_id": alarm_id, "changed": True}

    async def unlock(self, door: str, seconds: int, why: str) -> dict[str, Any]:
        linkage = self.rt.linkage
        if linkage is not None and linkage.holds(door):
            return {"door": door, "seconds": seconds, "note": "held open by the fire linkage"}
        terminals = self.rt.door_for(door)
        if terminals is None:
            raise ActionFailed(f"no configured door {door!r}")
        try:
            await terminals.unlock(door, seconds, why)
        except GatewayError as exc:
            raise ActionFailed(f"door {door}: {exc}") from None
        return {"door": door, "seconds": seconds}

    async def silence(self) -> dict[str, Any]:
        return {"silenced": self._engine().silence()}

    async def status(self) -> dict[str, Any]:
        _, doc = health(self.rt.snapshot())
        return {k: doc[k] for k in ("status", "failing", "devices", "backlog", "alarms")}
