"""Which pipeline items are a household's signs of life, and which say a source went offline.

Contract (pure; one ``Signs`` per config, called with every item that passes the pipeline):
- A door event is a sign of the households with a door sign on that door: a grant, an opening
  or a closing; a grant only, to that pseudonym (current or previous key), when the sign or
  the household names a person. Denials, alarms and derived events are never signs.
- A contact event of a button is a sign of the households with a button sign on that device
  whose ``inputs`` list the input (any input when empty), pressed or released.
- A good reading of a point sign's point is a sign when it is above ``above``, or, without
  ``above``, when its value differs from the last good value seen (the first only records).
- Availability (a device status, a terminal's online/offline event) of a source is returned
  as ``(source, online, ts)``: a door sign's source is the door's terminal, the others' their
  device.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.welfare import ButtonSignConfig, DoorSignConfig, WelfareConfig
from gateway.core.access import AccessEvent
from gateway.core.items import Item
from gateway.core.messages import ContactEvent, DeviceStatus, Quality, Sample, Value
from gateway.welfare.watch import Sign

DOOR_SIGNS = frozenset({"granted", "door_opened", "door_closed"})
Status = tuple[str, bool, float]  # source, online, wall time


@dataclass(frozen=True, slots=True)
class _Door:
    household: str
    person: str | None


@dataclass(frozen=True, slots=True)
class _Point:
    household: str
    above: float | None


class Signs:
    """The signs of every household, indexed by where they come from."""

    def __init__(self, cfg: WelfareConfig, terminals: Mapping[str, str]) -> None:
        """``terminals``: door id -> the id of the terminal that reports it."""
        self.doors: dict[str, list[_Door]] = {}
        self.buttons: dict[str, list[tuple[str, frozenset[str]]]] = {}
        self.points: dict[tuple[str, str], list[_Point]] = {}
        self.sources: dict[str, frozenset[str]] = {}
        self._last: dict[tuple[str, str], Value] = {}
        for h in cfg.households:
            own: set[str] = set()
            for sign in h.signs:
                if isinstance(sign, DoorSignConfig):
                    self.doors.setdefault(sign.door, []).append(_Door(h.id, h.person_of(sign)))
                    own.add(terminals.get(sign.door, sign.door))
                elif isinstance(sign, ButtonSignConfig):
                    entry = (h.id, frozenset(sign.inputs))
                    self.buttons.setdefault(sign.device, []).append(entry)
                    own.add(sign.device)
                else:
                    key = (sign.device, sign.point)
                    self.points.setdefault(key, []).append(_Point(h.id, sign.above))
                    own.add(sign.device)
            self.sources[h.id] = frozenset(own)

    def of(self, item: Item) -> tuple[list[Sign], list[Status]]:
        """The signs ``item`` gives, and the source availability it reports."""
        if isinstance(item, AccessEvent):
            return self._door(item)
        if isinstance(item, ContactEvent):
            return [
                Sign(hid, item.ts, "button", f"{item.device}/{item.input}")
                for hid, inputs in self.buttons.get(item.device, [])
                if not inputs or item.input in inputs
            ], []
        if isinstance(item, Sample):
            return self._sample(item), []
        if isinstance(item, DeviceStatus):
            return [], [(item.device, item.online, item.ts)]
        return [], []

    def _door(self, ev: AccessEvent) -> tuple[list[Sign], list[Status]]:
        if ev.kind in ("terminal_offline", "terminal_online"):
            return [], [(ev.device, ev.kind == "terminal_online", ev.gateway_ts)]
        if ev.kind not in DOOR_SIGNS or ev.derived:
            return [], []
        out = []
        for door in self.doors.get(ev.door, []):
            if door.person is not None and (
                ev.kind != "granted" or door.person not in (ev.person, ev.person_previous)
            ):
                continue
            out.append(Sign(door.household, ev.gateway_ts, "door", ev.door))
        return out, []

    def _sample(self, sample: Sample) -> list[Sign]:
        out: list[Sign] = []
        for r in sample.readings:
            key = (sample.device, r.name)
            watchers = self.points.get(key)
            if not watchers or r.quality is not Quality.GOOD or r.value is None:
                continue
            before, self._last[key] = self._last.get(key), r.value
            for p in watchers:
                if p.above is None:
                    moved = before is not None and before != r.value
                else:
                    moved = not isinstance(r.value, bool | str) and r.value > p.above
                if moved:
                    out.append(Sign(p.household, sample.ts, "point", f"{sample.device}/{r.name}"))
        return out
