"""What input drivers report to: the alarm engine, and the store for door-terminal events.

Door events become records on ``event/<terminal>`` (personal ones with their retention) and,
where they mean an alarm, contacts of the door for the alarm engine's contact rules:

=====================  ===========================================================
``forced``             input ``forced`` of the door, active until ``door_closed``
``held_open``          input ``held_open`` of the door, active until ``door_closed``
``tamper``             input ``tamper`` of the terminal, a pulse (use a latched rule)
``terminal_offline``   the terminal's availability (offline rules, ``device/<id>/status``)
=====================  ===========================================================
"""

from collections.abc import Callable

from gateway.access import AccessEvent
from gateway.alarms.engine import AlarmEngine
from gateway.contract import access_record, status_record
from gateway.messages import ContactEvent, DeviceStatus, Record


class Inputs:
    """The ``AlarmInputs`` of the driver registry, plus ``access`` for door terminals."""

    def __init__(
        self, engine: AlarmEngine, add: Callable[[Record], None], synced: Callable[[], bool]
    ) -> None:
        self.engine = engine
        self.add = add
        self.synced = synced

    def contact(self, event: ContactEvent) -> None:
        self.engine.contact(event)

    async def acknowledge_all(self, by: str) -> int:
        return await self.engine.acknowledge_all(by)

    async def reset_all(self, by: str) -> int:
        return await self.engine.reset_all(by)

    def access(self, ev: AccessEvent) -> None:
        """Store a door event and show the alarm engine what it means."""
        synced = self.synced()
        self.add(access_record(ev, synced))
        for contact in door_contacts(ev):
            self.engine.contact(contact)
        if ev.kind in ("terminal_offline", "terminal_online"):
            online = ev.kind == "terminal_online"
            status = DeviceStatus(ev.device, online, ev.gateway_ts, "ok" if online else "silent")
            self.add(status_record(status, synced))
            self.engine.status(status)


def door_contacts(ev: AccessEvent) -> list[ContactEvent]:
    """The contact changes a door event means (see the module docstring)."""
    ts, eid = ev.gateway_ts, ev.event_id
    if ev.kind in ("forced", "held_open"):
        return [ContactEvent(ev.door, ev.kind, True, ts, eid)]
    if ev.kind == "door_closed":
        return [ContactEvent(ev.door, name, False, ts, eid) for name in ("forced", "held_open")]
    if ev.kind == "tamper":
        return [
            ContactEvent(ev.device, "tamper", True, ts, eid),
            ContactEvent(ev.device, "tamper", False, ts, eid),
        ]
    return []
