"""What drivers report to: the store (what goes upstream) and the alarm engine (what alarms).

Poll samples and device status changes become telemetry and ``device/<id>/status`` records and
are shown to the alarm engine; contacts go to the alarm engine only. Door events become records
on ``event/<terminal>`` (personal ones with their retention) and, where they mean an alarm,
contacts of the door for the alarm engine's contact rules:

=====================  ===========================================================
``forced``             input ``forced`` of the door, active until ``door_closed``
``held_open``          input ``held_open`` of the door, active until ``door_closed``
``tamper``             input ``tamper`` of the terminal, a pulse (use a latched rule)
``terminal_offline``   the terminal's availability (offline rules, ``device/<id>/status``)
=====================  ===========================================================
"""

from collections.abc import Callable

from gateway.alarms.engine import AlarmEngine
from gateway.core.access import AccessEvent
from gateway.core.contract import access_record, status_record, telemetry_record
from gateway.core.messages import ContactEvent, DeviceStatus, Record, Sample


class Inputs:
    """The pollers' ``Emitter`` and the driver registry's ``AlarmInputs``."""

    def __init__(
        self, engine: AlarmEngine, add: Callable[[Record], None], synced: Callable[[], bool]
    ) -> None:
        self.engine = engine
        self.add = add
        self.synced = synced

    def sample(self, sample: Sample) -> None:
        self.add(telemetry_record(sample, self.synced()))
        self.engine.sample(sample)

    def status(self, status: DeviceStatus) -> None:
        self.add(status_record(status, self.synced()))
        self.engine.status(status)

    def contact(self, event: ContactEvent) -> None:
        self.engine.contact(event)

    async def acknowledge_all(self, by: str) -> int:
        return await self.engine.acknowledge_all(by)

    async def reset_all(self, by: str) -> int:
        return await self.engine.reset_all(by)

    def access(self, ev: AccessEvent) -> None:
        """Store a door event and show the alarm engine what it means."""
        self.add(access_record(ev, self.synced()))
        for contact in door_contacts(ev):
            self.engine.contact(contact)
        if ev.kind in ("terminal_offline", "terminal_online"):
            online = ev.kind == "terminal_online"
            self.status(
                DeviceStatus(ev.device, online, ev.gateway_ts, "ok" if online else "silent")
            )


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
