"""The pipeline's stages, in the order the composition root chains them.

Each is a plain callable ``(Item) -> Item | None`` (see ``gateway.pipeline.chain``):

- ``Validate`` (pure): drops an item with no device id or a timestamp that is not a finite
  number (``dropped["no_device"]``, ``dropped["bad_ts"]``).
- ``Scale`` (pure): a ``RawSample`` of a configured device (Modbus, mqtt_json) becomes a
  ``Sample`` through ``gateway.pipeline.scale.to_reading``; a raw sample of a device it has no
  points for is dropped (``dropped["unknown_device"]``). Everything else passes untouched.
- ``Track`` (writes ``DeviceStates``, no I/O): samples become last values; status changes and
  terminal online/offline events become availability; contacts and door events mark their
  device as heard from.
- ``Availability`` (hands over to the availability recorder, no I/O): status changes and
  terminal online/offline events as availability, and each sample with at least one value read
  (a quality other than ``comm_error``) as one reading, for the proof-of-service reports.
- ``Welfare`` (hands over to the welfare monitor, no I/O): every item, after pseudonymisation;
  the monitor picks the signs of life of the households it watches (``gateway.welfare``).
- ``Rules`` (hands over to the alarm engine's inbox, no I/O): samples, status changes and
  contacts go to the engine; door events go as the contacts they mean (``door_contacts``),
  and a terminal's online/offline as its status. A contact no contact rule names (a door's
  clearing contacts aside) is counted as its device's ``unmatched`` in ``DeviceStates``; the
  first one of each device is logged at WARNING, since nothing else would ever show it.
- ``Store`` (hands over to the store's pending batch; the committer does the I/O): samples,
  status changes and door events become records; contacts are not stored (their alarms are).
  A door event still holding a raw person id is a bug (a pipeline without the pseudonymise
  stage of ``gateway.pipeline.privacy``): it raises ``ValueError`` rather than store it.

Every stage returns its item unchanged except ``Scale``; only ``Validate`` and ``Scale`` drop.
"""

import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from gateway.config.modbus import ModbusDeviceConfig
from gateway.config.models import Config
from gateway.config.welfare import ButtonSignConfig
from gateway.core.access import AccessEvent
from gateway.core.contract import access_record, status_record, telemetry_record
from gateway.core.devices import DeviceStates
from gateway.core.items import Item, RawSample, Stage
from gateway.core.messages import ContactEvent, DeviceStatus, Quality, Record, Sample
from gateway.core.records import TerminalRecord, record_record
from gateway.pipeline.chain import Pipeline
from gateway.pipeline.privacy import Pseudonymise, Pseudonymiser
from gateway.pipeline.scale import Scaled, to_reading

log = logging.getLogger(__name__)
UNMATCHED = "unmatched"  # the DeviceStates counter of contacts no rule names
TERMINAL_KINDS = ("terminal_offline", "terminal_online")


def _ts(item: Item) -> float:
    return item.gateway_ts if isinstance(item, AccessEvent) else item.ts


class Validate:
    """Drops items no later stage could place (see the module docstring)."""

    name = "validate"

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()

    def __call__(self, item: Item) -> Item | None:
        if not item.device:
            self.dropped["no_device"] += 1
            return None
        ts = _ts(item)
        if not math.isfinite(ts):
            self.dropped["bad_ts"] += 1
            return None
        return item


class Scale:
    """Raw decoded values to scaled, judged readings, by each device's point configs."""

    name = "scale"

    def __init__(self, points: Mapping[str, Mapping[str, Scaled]]) -> None:
        """``points``: device id -> point name -> its config."""
        self.points = points
        self.dropped: Counter[str] = Counter()

    def __call__(self, item: Item) -> Item | None:
        if not isinstance(item, RawSample):
            return item
        points = self.points.get(item.device)
        if points is None or any(name not in points for name, _ in item.values):
            self.dropped["unknown_device"] += 1
            return None
        readings = tuple(to_reading(points[name], raw) for name, raw in item.values)
        return Sample(item.device, item.ts, readings)


def terminal_status(ev: AccessEvent) -> DeviceStatus | None:
    """The availability a terminal's online/offline event means, else None."""
    if ev.kind not in TERMINAL_KINDS:
        return None
    online = ev.kind == "terminal_online"
    return DeviceStatus(ev.device, online, ev.gateway_ts, "ok" if online else "silent")


class Track:
    """Keeps ``DeviceStates`` up to date with what passes."""

    name = "device_state"

    def __init__(self, states: DeviceStates) -> None:
        self.states = states

    def __call__(self, item: Item) -> Item | None:
        if isinstance(item, Sample):
            self.states.sample(item)
        elif isinstance(item, DeviceStatus):
            self.states.availability(item.device, item.online, item.ts, item.reason)
        elif isinstance(item, AccessEvent):
            status = terminal_status(item)
            if status is not None:
                self.states.availability(status.device, status.online, status.ts, status.reason)
            else:
                self.states.count(item.device, "events")
        elif isinstance(item, ContactEvent):
            self.states.count(item.device, "events")
        return item


class AvailabilityLog(Protocol):
    """What the availability stage hands over to: the recorder (``gateway.reports.recorder``)."""

    def availability(self, device: str, online: bool, ts: float) -> None: ...
    def reading(self, device: str, ts: float) -> None: ...


class Availability:
    """Shows the availability recorder each device's changes and readings."""

    name = "availability"

    def __init__(self, log: AvailabilityLog) -> None:
        self.log = log

    def __call__(self, item: Item) -> Item | None:
        if isinstance(item, Sample):
            if any(r.quality is not Quality.COMM_ERROR for r in item.readings):
                self.log.reading(item.device, item.ts)
        elif isinstance(item, DeviceStatus):
            self.log.availability(item.device, item.online, item.ts)
        elif isinstance(item, AccessEvent):
            status = terminal_status(item)
            if status is not None:
                self.log.availability(status.device, status.online, status.ts)
        return item


class Welfare:
    """Shows the welfare monitor every item."""

    name = "welfare"

    def __init__(self, see: Callable[[Item], None]) -> None:
        self.see = see

    def __call__(self, item: Item) -> Item | None:
        self.see(item)
        return item


class AlarmInbox(Protocol):
    """What the rules stage hands over to: the alarm engine."""

    def sample(self, sample: Sample) -> None: ...
    def status(self, status: DeviceStatus) -> None: ...
    def contact(self, event: ContactEvent) -> None: ...
    def covers(self, event: ContactEvent) -> bool: ...


class Rules:
    """Shows the alarm engine what it evaluates (see the module docstring)."""

    name = "rules"

    def __init__(
        self,
        engine: AlarmInbox,
        states: DeviceStates,
        signs: Collection[tuple[str, str]] = (),
    ) -> None:
        self.engine = engine
        self.states = states
        # (device, input) pairs a welfare check counts as signs of life ("" input: any): they
        # raise no alarm by design, so they are not "unmatched"
        self.signs = frozenset(signs)

    def _contact(self, event: ContactEvent, counted: bool = True) -> None:
        self.engine.contact(event)
        if not counted or self.engine.covers(event):
            return
        if self.signs and not self.signs.isdisjoint(
            ((event.device, event.input), (event.device, ""))
        ):
            return
        state = self.states.snapshot().get(event.device)
        if state is None or not state.counters.get(UNMATCHED):
            log.warning(
                "input %s of device %s matches no contact rule: its events raise no alarm"
                " (counted as unmatched)",
                event.input,
                event.device,
            )
        self.states.count(event.device, UNMATCHED)

    def __call__(self, item: Item) -> Item | None:
        if isinstance(item, Sample):
            self.engine.sample(item)
        elif isinstance(item, DeviceStatus):
            self.engine.status(item)
        elif isinstance(item, ContactEvent):
            self._contact(item)
        elif isinstance(item, AccessEvent):
            for contact in door_contacts(item):
                self._contact(contact, counted=contact.active)
            status = terminal_status(item)
            if status is not None:
                self.engine.status(status)
        elif isinstance(item, TerminalRecord) and item.urgent:  # a pulse of input <kind>
            self._contact(ContactEvent(item.device, item.kind, True, item.ts, item.record_id))
            self._contact(ContactEvent(item.device, item.kind, False, item.ts, item.record_id),
                          counted=False)  # fmt: skip
        return item


class Store:
    """Hands records of what goes upstream to the store."""

    name = "store"

    def __init__(self, add: Callable[[Record], None], synced: Callable[[], bool]) -> None:
        self.add = add
        self.synced = synced

    def __call__(self, item: Item) -> Item | None:
        if isinstance(item, AccessEvent) and item.raw_person:
            raise ValueError("a door event reached the store stage before pseudonymisation")
        if isinstance(item, Sample):
            self.add(telemetry_record(item, self.synced()))
        elif isinstance(item, DeviceStatus):
            self.add(status_record(item, self.synced()))
        elif isinstance(item, AccessEvent):
            self.add(access_record(item, self.synced()))
            status = terminal_status(item)
            if status is not None:
                self.add(status_record(status, self.synced()))
        elif isinstance(item, TerminalRecord):
            self.add(record_record(item, self.synced()))
        return item


def door_contacts(ev: AccessEvent) -> list[ContactEvent]:
    """The contact changes a door event means.

    =====================  ===========================================================
    ``forced``             input ``forced`` of the door, active until ``door_closed``
    ``held_open``          input ``held_open`` of the door, active until ``door_closed``
    ``tamper``             input ``tamper`` of the terminal, a pulse (use a latched rule)
    ``terminal_offline``   the terminal's availability (offline rules, ``device/<id>/status``)
    =====================  ===========================================================
    """
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


def pipeline(
    cfg: Config,
    states: DeviceStates,
    engine: AlarmInbox,
    add: Callable[[Record], None],
    synced: Callable[[], bool],
    dedup: Sequence[Stage] = (),
    availability: AvailabilityLog | None = None,
    welfare: Callable[[Item], None] | None = None,
) -> Pipeline:
    """The gateway's pipeline, built from the config by the composition root.

    validate -> scale -> pseudonymise (when ``privacy`` is configured) -> ``dedup`` (a driver
    group's own stages, ``DriverGroup.stages``) -> device state -> availability (when a
    recorder is given) -> welfare (when a monitor is given) -> rules -> store.
    Raises ``ConfigError`` if the pseudonym keys cannot be loaded.
    """
    points: dict[str, Mapping[str, Scaled]] = {
        d.id: {p.name: p for p in d.active_points}
        for d in cfg.devices
        if isinstance(d, ModbusDeviceConfig)
    }
    for d in cfg.json_entries:  # over the broker and pushed by HTTP
        own = {p.name: p for p in d.active_points}
        points.update(dict.fromkeys(d.device_ids, own))
    privacy = (
        []
        if cfg.privacy is None
        else [
            Pseudonymise(
                Pseudonymiser.from_files(
                    cfg.gateway.site_id, cfg.privacy.key_file, cfg.privacy.previous_key_file
                )
            )
        ]
    )
    return Pipeline(
        [
            Validate(),
            Scale(points),
            *privacy,
            *_sealing(cfg, privacy[0].names if privacy else None),
            *dedup,
            Track(states),
            *([] if availability is None else [Availability(availability)]),
            *([] if welfare is None else [Welfare(welfare)]),
            Rules(engine, states, welfare_signs(cfg)),
            Store(add, synced),
        ]
    )


def welfare_signs(cfg: Config) -> set[tuple[str, str]]:
    """The button inputs welfare checks count as signs of life: (device, input or "")."""
    if cfg.welfare is None:
        return set()
    return {
        (sign.device, name)
        for household in cfg.welfare.households
        for sign in household.signs
        if isinstance(sign, ButtonSignConfig)
        for name in (sign.inputs or [""])
    }


def _sealing(cfg: Config, names: Pseudonymiser | None) -> list[Stage]:
    """The seal stage, when terminal records are configured (cryptography loads only then)."""
    if cfg.records is None:
        return []
    from gateway.config.sealing_key import load_public_key
    from gateway.pipeline.sealing import Seal

    path = cfg.records.public_key_file
    key = None if path is None else load_public_key(path)
    return [Seal(cfg.gateway.site_id, cfg.gateway.gateway_id, key, names)]
