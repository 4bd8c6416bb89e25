"""Alarm rules: readings, contact events and device status in, conditions out (pure).

Contract of every rule: it reports a ``Condition`` only when its verdict on a cause changes
(abnormal -> normal or back), never on every reading. Time arrives as arguments: ``wall`` for
schedules (local time of day) and record stamps, ``mono`` for durations. Readings whose
quality is not ``good`` neither raise nor clear a threshold alarm: a sensor that stopped
answering does not prove the air got clean.

- Threshold: beyond ``limit`` continuously for ``for_s`` raises; inside the ``clear`` bound
  continuously for ``clear_for_s`` clears (hysteresis: between the two nothing changes).
  ``schedule`` windows replace limit and clear by local time of day (night-time noise limits).
- Contact: an input's active state is the condition; latched rules keep the alarm after the
  contact returns (the lifecycle handles that).
- Offline: the poller's offline/online status is the condition.
- Sensor fault: quality ``bad`` continuously for ``for_s`` raises; a good reading clears.
- ``input_unavailable`` (added by the engine itself, no config): a device that a contact rule
  names by its id (not by ``*``) going offline raises it; back online clears it. A GPIO
  device that cannot open its pins, a Modbus device with contact points that stops
  answering and a door terminal that falls silent all say so as a ``DeviceStatus``. Its
  severity is ``critical`` when a critical rule names the device (a dead emergency or fire
  button is as urgent as its press: nobody can raise that alarm any more), else ``warning``;
  the ladder is that of the first rule naming the device.
"""

from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from gateway.alarms.model import Condition
from gateway.config.alarms import (
    AlarmsConfig,
    ContactRuleConfig,
    OfflineRuleConfig,
    SensorFaultRuleConfig,
    ThresholdRuleConfig,
)
from gateway.core.messages import ContactEvent, DeviceStatus, Quality, Sample

INPUT_UNAVAILABLE = "input_unavailable"  # the rule id of the engine's own input rule


def alarm_inputs(cfg: AlarmsConfig) -> dict[str, tuple[str, str]]:
    """Devices a contact rule names by id: ``device -> (severity, ladder)`` of the
    ``input_unavailable`` alarm they raise when they do not run."""
    out: dict[str, tuple[str, str]] = {}
    for rule in cfg.rules:
        if not isinstance(rule, ContactRuleConfig) or rule.device == "*":
            continue
        severity, ladder = out.get(rule.device, ("warning", rule.ladder))
        out[rule.device] = ("critical" if rule.severity == "critical" else severity, ladder)
    return out


def in_window(now: time, start: time, end: time) -> bool:
    """Whether local time ``now`` lies in [start, end), a window that may wrap midnight."""
    if start <= end:
        return start <= now < end
    return now >= start or now < end


@dataclass(slots=True)
class _Track:
    """What a rule remembers about one cause."""

    active: bool = False
    since: float | None = None  # monotonic start of the run that may flip the verdict


def _applies(devices: list[str] | str, device: str) -> bool:
    return devices == "*" or device in devices


class Evaluator:
    """All configured rules with their per-cause memory."""

    def __init__(self, cfg: AlarmsConfig) -> None:
        self.cfg = cfg
        self.zone = ZoneInfo(cfg.timezone)
        self._tracks: dict[str, _Track] = {}
        self._inputs = alarm_inputs(cfg)

    def _track(self, cause: str) -> _Track:
        track = self._tracks.get(cause)
        if track is None:
            track = self._tracks[cause] = _Track()
        return track

    def restore(self, cause: str, active: bool) -> None:
        """Remember a verdict from before a restart (an alarm that was open and active)."""
        self._track(cause).active = active

    def limits(self, rule: ThresholdRuleConfig, wall: float) -> tuple[float, float]:
        """(limit, clear) in force at wall-clock time ``wall``."""
        now = datetime.fromtimestamp(wall, self.zone).time()
        for w in rule.schedule:
            if in_window(now, w.start, w.end):
                return w.limit, w.limit if w.clear is None else w.clear
        return rule.limit, rule.limit if rule.clear is None else rule.clear

    # -- inputs ---------------------------------------------------------------------------

    def on_sample(self, sample: Sample, mono: float) -> list[Condition]:
        """Threshold and sensor-fault verdicts that changed with this poll."""
        out: list[Condition] = []
        readings = {r.name: r for r in sample.readings}
        for rule in self.cfg.rules:
            if isinstance(rule, ThresholdRuleConfig) and _applies(rule.devices, sample.device):
                reading = readings.get(rule.point)
                if reading is None or reading.quality is not Quality.GOOD:
                    continue
                if isinstance(reading.value, bool | str) or reading.value is None:
                    continue
                cond = self._threshold(rule, sample, float(reading.value), mono)
                if cond is not None:
                    out.append(cond)
            elif isinstance(rule, SensorFaultRuleConfig) and _applies(rule.devices, sample.device):
                out += self._faults(rule, sample, mono)
        return out

    def covers(self, event: ContactEvent) -> bool:
        """Whether a contact rule names ``event``'s device and input (``*`` included)."""
        return any(
            isinstance(rule, ContactRuleConfig)
            and rule.device in ("*", event.device)
            and rule.input in ("*", event.input)
            for rule in self.cfg.rules
        )

    def on_contact(self, event: ContactEvent) -> list[Condition]:
        """Contact verdicts: every change of an input a contact rule covers."""
        out: list[Condition] = []
        for rule in self.cfg.rules:
            if not isinstance(rule, ContactRuleConfig) or rule.device not in ("*", event.device):
                continue
            if rule.input not in ("*", event.input):
                continue
            cause = f"{rule.id}/{event.device}/{event.input}"
            track = self._track(cause)
            if track.active == event.active:
                continue
            track.active = event.active
            out.append(
                Condition(
                    cause,
                    rule.id,
                    "contact",
                    event.device,
                    event.active,
                    rule.severity,
                    rule.latched,
                    rule.ladder,
                    contact_message(rule.type, event.input, event.active),
                    event.ts,
                    event.active,
                )
            )
        return out

    def on_status(self, status: DeviceStatus) -> list[Condition]:
        """Offline verdicts: a device went offline or came back."""
        out: list[Condition] = self._input_unavailable(status)
        for rule in self.cfg.rules:
            if not isinstance(rule, OfflineRuleConfig) or not _applies(rule.devices, status.device):
                continue
            cause = f"{rule.id}/{status.device}"
            track = self._track(cause)
            if track.active == (not status.online):
                continue
            track.active = not status.online
            msg = "device back online" if status.online else f"device offline: {status.reason}"
            out.append(
                Condition(
                    cause,
                    rule.id,
                    "offline",
                    status.device,
                    track.active,
                    rule.severity,
                    False,
                    rule.ladder,
                    msg,
                    status.ts,
                )
            )
        return out

    # -- rule kinds -----------------------------------------------------------------------

    def _input_unavailable(self, status: DeviceStatus) -> list[Condition]:
        named = self._inputs.get(status.device)
        if named is None:
            return []
        cause = f"{INPUT_UNAVAILABLE}/{status.device}"
        track = self._track(cause)
        if track.active == (not status.online):
            return []
        track.active = not status.online
        severity, ladder = named
        msg = (
            "alarm input running again"
            if status.online
            else f"alarm input not running: {status.reason}"
        )
        return [
            Condition(cause, INPUT_UNAVAILABLE, "offline", status.device, track.active,
                      severity, False, ladder, msg, status.ts)
        ]  # fmt: skip

    def _threshold(
        self, rule: ThresholdRuleConfig, sample: Sample, value: float, mono: float
    ) -> Condition | None:
        cause = f"{rule.id}/{sample.device}/{rule.point}"
        track = self._track(cause)
        limit, clear = self.limits(rule, sample.ts)
        high = rule.direction == "above"
        beyond = value > limit if high else value < limit
        inside = value <= clear if high else value >= clear
        flips = inside if track.active else beyond  # the run that would change the verdict
        if not flips:
            track.since = None
            return None
        if track.since is None:
            track.since = mono
        if mono - track.since < (rule.clear_for_s if track.active else rule.for_s):
            return None
        track.active = not track.active
        track.since = None
        sign = ">" if high else "<"
        msg = (
            f"{rule.point} {value:g} {sign} {limit:g}"
            if track.active
            else f"{rule.point} back to {value:g}"
        )
        return Condition(
            cause,
            rule.id,
            "threshold",
            sample.device,
            track.active,
            rule.severity,
            False,
            rule.ladder,
            msg,
            sample.ts,
            value,
        )

    def _faults(self, rule: SensorFaultRuleConfig, sample: Sample, mono: float) -> list[Condition]:
        out: list[Condition] = []
        for r in sample.readings:
            if r.quality not in (Quality.GOOD, Quality.BAD):
                continue  # not read this time: no verdict either way
            cause = f"{rule.id}/{sample.device}/{r.name}"
            track = self._track(cause)
            bad = r.quality is Quality.BAD
            if bad == track.active:
                track.since = None
                continue
            if bad:
                if track.since is None:
                    track.since = mono
                if mono - track.since < rule.for_s:
                    continue
            track.active = bad
            track.since = None
            msg = (
                f"{r.name} reads {r.value} outside its range"
                if bad
                else f"{r.name} plausible again"
            )
            out.append(
                Condition(
                    cause,
                    rule.id,
                    "sensor_fault",
                    sample.device,
                    bad,
                    rule.severity,
                    False,
                    rule.ladder,
                    msg,
                    sample.ts,
                    r.value,
                )
            )
        return out


DOOR_INPUTS = {"forced": "forced open", "held_open": "held open"}  # door terminals' inputs


def contact_message(kind: str, name: str, active: bool) -> str:
    """``emergency input sos pressed``; a door's own inputs say what the door does."""
    if kind == "door" and name in DOOR_INPUTS:
        return f"door {DOOR_INPUTS[name]}" if active else f"door closed ({name} over)"
    return f"{kind} input {name} {'pressed' if active else 'released'}"
