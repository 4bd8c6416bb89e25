"""Alarm rules over a simulated clock: hysteresis edges, durations, schedules, contacts."""

from collections.abc import Sequence
from datetime import UTC, datetime, time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.alarms.model import Condition
from gateway.alarms.rules import Evaluator, in_window
from gateway.config.alarms import AlarmsConfig
from gateway.core.messages import ContactEvent, DeviceStatus, Quality, Reading, Sample

# 2026-11-28 00:00 in Asia/Shanghai (UTC+8) is 2026-11-27 16:00 UTC
MIDNIGHT_CST = datetime(2026, 11, 27, 16, 0, tzinfo=UTC).timestamp()


def evaluator(*rules: dict[str, Any]) -> Evaluator:
    return Evaluator(AlarmsConfig.model_validate({"rules": list(rules)}))


def pm25_rule(**kw: Any) -> dict[str, Any]:
    return {
        "kind": "threshold",
        "id": "pm25-high",
        "point": "pm25",
        "limit": 75,
        "clear": 60,
        "for_s": 600,
        "clear_for_s": 600,
        **kw,
    }


def sample(
    value: float | None,
    ts: float = MIDNIGHT_CST,
    device: str = "pm-1",
    point: str = "pm25",
    quality: Quality = Quality.GOOD,
) -> Sample:
    return Sample(device, ts, (Reading(point, value, "ug/m3", quality),))


def feed(
    ev: Evaluator,
    values: Sequence[float],
    step: float = 60.0,
    t0: float = 0.0,
    wall0: float = MIDNIGHT_CST,
) -> list[tuple[float, Condition]]:
    """Feed one reading per ``step`` seconds; return (elapsed, condition) for each verdict."""
    out = []
    for i, v in enumerate(values):
        t = t0 + i * step
        out += [(t, c) for c in ev.on_sample(sample(v, wall0 + t), t)]
    return out


def test_threshold_needs_the_whole_duration_beyond_the_limit() -> None:
    ev = evaluator(pm25_rule())
    # 80 for 9 minutes, a dip to 70 (still above clear, but not above limit), then 80 again
    got = feed(ev, [80] * 10 + [70] + [80] * 11)
    assert len(got) == 1
    t, cond = got[0]
    assert cond.active
    assert t == 21 * 60  # 600 s after the reading at 11 min, not after the first at 0
    assert cond.cause == "pm25-high/pm-1/pm25"
    assert cond.message == "pm25 80 > 75"


def test_threshold_raises_exactly_at_for_s() -> None:
    ev = evaluator(pm25_rule(for_s=120))
    got = feed(ev, [76, 76, 76], step=60)
    assert [t for t, _ in got] == [120]


def test_hysteresis_band_neither_raises_nor_clears() -> None:
    ev = evaluator(pm25_rule(for_s=0, clear_for_s=0))
    got = feed(ev, [76, 70, 65, 61, 60.5, 75, 60, 59])
    # raised by 76; 70..60.5 and 75 lie in the band (clear at <= 60); 60 clears
    assert [(round(t), c.active) for t, c in got] == [(0, True), (360, False)]


def test_limit_itself_is_not_beyond_and_clear_itself_clears() -> None:
    ev = evaluator(pm25_rule(for_s=0, clear_for_s=0))
    assert feed(ev, [75]) == []
    assert [c.active for _, c in feed(ev, [75.01, 60], t0=100)] == [True, False]


def test_clearing_needs_the_whole_clear_duration() -> None:
    ev = evaluator(pm25_rule(for_s=0, clear_for_s=600))
    got = feed(ev, [80] + [50] * 9 + [62] + [50] * 11)
    assert [(t, c.active) for t, c in got] == [(0, True), (21 * 60, False)]


def test_bad_and_missing_readings_neither_raise_nor_clear() -> None:
    ev = evaluator(pm25_rule(for_s=0, clear_for_s=0))
    assert ev.on_sample(sample(900, quality=Quality.BAD), 0) == []
    assert [c.active for c in ev.on_sample(sample(80), 1)] == [True]
    assert ev.on_sample(sample(None, quality=Quality.COMM_ERROR), 2) == []
    assert ev.on_sample(sample(10, quality=Quality.BAD), 3) == []
    assert [c.active for c in ev.on_sample(sample(10), 4)] == [False]


def test_low_alarm_direction() -> None:
    ev = evaluator(
        {
            "kind": "threshold",
            "id": "cold",
            "point": "t",
            "direction": "below",
            "limit": 5,
            "clear": 8,
        }
    )
    got = [c for v in (6, 4.9, 7, 8) for c in ev.on_sample(sample(v, point="t"), 0)]
    assert [c.active for c in got] == [True, False]
    assert got[0].message == "t 4.9 < 5"


def test_rule_applies_only_to_its_devices() -> None:
    ev = evaluator(pm25_rule(for_s=0, devices=["pm-2"]))
    assert ev.on_sample(sample(99, device="pm-1"), 0) == []
    assert len(ev.on_sample(sample(99, device="pm-2"), 0)) == 1


NOISE = {
    "kind": "threshold",
    "id": "noise",
    "point": "noise",
    "limit": 55,
    "clear": 52,
    "schedule": [{"start": "22:00", "end": "06:00", "limit": 45, "clear": 42}],
}


@pytest.mark.parametrize(
    ("local", "limit"),
    [
        ("05:59:59", 45),
        ("06:00:00", 55),
        ("12:00:00", 55),
        ("21:59:59", 55),
        ("22:00:00", 45),
        ("00:00:00", 45),
    ],
)
def test_night_noise_limit_follows_local_time(local: str, limit: float) -> None:
    ev = evaluator(NOISE)
    h, m, s = (int(x) for x in local.split(":"))
    wall = MIDNIGHT_CST + h * 3600 + m * 60 + s
    rule = ev.cfg.rules[0]
    assert ev.limits(rule, wall)[0] == limit  # type: ignore[arg-type]


def test_fifty_db_at_night_alarms_and_by_day_does_not() -> None:
    ev = evaluator(NOISE)
    day = ev.on_sample(sample(50, MIDNIGHT_CST + 12 * 3600, point="noise"), 0)
    night = ev.on_sample(sample(50, MIDNIGHT_CST + 23 * 3600, point="noise"), 1)
    assert day == []
    assert [c.active for c in night] == [True]
    # at 06:00 the day limit applies: 50 is inside the day clear bound (52), so it clears
    morning = ev.on_sample(sample(50, MIDNIGHT_CST + 30 * 3600, point="noise"), 2)
    assert [c.active for c in morning] == [False]


@given(st.times(), st.times(), st.times())
def test_window_membership_matches_a_plain_definition(now: time, start: time, end: time) -> None:
    def minutes(t: time) -> float:
        return t.hour * 60 + t.minute + t.second / 60 + t.microsecond / 6e7

    n, a, b = minutes(now), minutes(start), minutes(end)
    expected = a <= n < b if a <= b else (n >= a or n < b)
    assert in_window(now, start, end) is expected


def test_contact_press_and_release_are_conditions_once_each() -> None:
    ev = evaluator({"kind": "contact", "id": "sos", "device": "btn-3f", "type": "emergency"})
    press = ContactEvent("btn-3f", "b1", True, 10.0)
    got = ev.on_contact(press) + ev.on_contact(press)  # a repeat is not a new verdict
    got += ev.on_contact(ContactEvent("btn-3f", "b1", False, 11.0))
    got += ev.on_contact(ContactEvent("other", "b1", True, 12.0))
    assert [(c.active, c.latched, c.severity) for c in got] == [
        (True, True, "critical"),
        (False, True, "critical"),
    ]
    assert got[0].cause == "sos/btn-3f/b1"
    assert got[0].message == "emergency input b1 pressed"


def test_offline_rule_follows_device_status() -> None:
    ev = evaluator({"kind": "offline", "id": "offline"})
    got = ev.on_status(DeviceStatus("pm-1", True, 1, "ok"))  # online at start: nothing
    got += ev.on_status(DeviceStatus("pm-1", False, 2, "timeout"))
    got += ev.on_status(DeviceStatus("pm-1", False, 3, "timeout"))
    got += ev.on_status(DeviceStatus("pm-1", True, 4, "ok"))
    assert [(c.active, c.kind) for c in got] == [(True, "offline"), (False, "offline")]
    assert got[0].message == "device offline: timeout"


def test_sensor_fault_after_for_s_of_bad_readings() -> None:
    ev = evaluator({"kind": "sensor_fault", "id": "fault", "for_s": 120})
    got = []
    for t, q in [
        (0, Quality.BAD),
        (60, Quality.BAD),
        (90, Quality.COMM_ERROR),
        (120, Quality.BAD),
        (180, Quality.GOOD),
    ]:
        got += [(t, c.active) for c in ev.on_sample(sample(900, MIDNIGHT_CST + t, quality=q), t)]
    assert got == [(120, True), (180, False)]


def test_an_alarm_input_that_stops_running_raises_input_unavailable_and_clears_on_return() -> None:
    ev = evaluator(
        {"kind": "contact", "id": "sos", "device": "hall", "input": "sos"},
        {"kind": "contact", "id": "tamper", "device": "gate", "severity": "info"},
        {"kind": "contact", "id": "any", "device": "*", "severity": "critical"},
    )
    (down,) = ev.on_status(DeviceStatus("hall", False, 10.0, "no pin factory"))
    assert (down.rule, down.cause, down.active, down.severity, down.ladder) == (
        "input_unavailable", "input_unavailable/hall", True, "critical", "default"
    )  # fmt: skip
    assert down.message == "alarm input not running: no pin factory"
    assert ev.on_status(DeviceStatus("hall", False, 11.0, "no pin factory")) == []  # no repeat
    (gate,) = ev.on_status(DeviceStatus("gate", False, 12.0, "silent"))
    assert gate.severity == "warning"  # a lesser rule's input is still worth a warning
    assert ev.on_status(DeviceStatus("thermo", False, 12.0, "timeout")) == []  # only '*' names it
    (back,) = ev.on_status(DeviceStatus("hall", True, 20.0, "ok"))
    assert (back.active, back.message) == (False, "alarm input running again")


def test_covers_says_whether_a_contact_rule_names_an_events_device_and_input() -> None:
    ev = evaluator(
        {"kind": "contact", "id": "sos", "device": "hall", "input": "sos"},
        {"kind": "contact", "id": "btn", "device": "*", "input": "button"},
    )
    assert ev.covers(ContactEvent("hall", "sos", True, 1.0))
    assert ev.covers(ContactEvent("lobby", "button", True, 1.0))
    assert not ev.covers(ContactEvent("hall", "pressed", True, 1.0))
