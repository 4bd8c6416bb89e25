"""``DeviceStates``: one state per device, cheap snapshots, a change notification."""

import asyncio

import pytest

from gateway.core import devices
from gateway.core.devices import DeviceStates
from gateway.core.messages import Quality, Reading, Sample


def test_a_snapshot_is_immutable_and_reused_until_something_changes() -> None:
    states = DeviceStates()
    states.register("d", "modbus")
    states.sample(Sample("d", 5.0, (Reading("t", 21.5, "degC", Quality.GOOD),)))
    first = states.snapshot()
    assert states.snapshot() is first
    states.count("d", "polls")
    second = states.snapshot()
    assert second is not first
    assert "polls" not in first["d"].counters  # the old snapshot did not move
    assert second["d"].counters["polls"] == 1
    assert second["d"].kind == "modbus"
    assert second["d"].points["t"].ts == 5.0


def test_availability_keeps_since_across_repeats_and_reports_per_device() -> None:
    states = DeviceStates()
    states.register("quiet", "gpio")
    states.availability("d", False, 10.0, "timeout")
    states.availability("d", False, 20.0, "timeout")
    assert states.snapshot()["d"].since == 10.0
    states.availability("d", True, 30.0, "ok")
    assert states.snapshot()["d"].since == 30.0
    assert states.snapshot()["d"].last_error == "timeout"
    assert states.availability_of() == {"quiet": "unknown", "d": "online"}
    assert states.availability_of(kinds=("gpio",)) == {"quiet": "unknown"}


def test_disabled_points_leave_the_values_and_are_noted_once() -> None:
    states = DeviceStates()
    states.sample(Sample("d", 5.0, (Reading("ghost", None, "", Quality.COMM_ERROR),)))
    states.disable("d", "ghost", "exception 0x02")
    version = states.version
    states.disable("d", "ghost", "exception 0x02")
    assert states.version == version
    snap = states.snapshot()["d"]
    assert dict(snap.disabled) == {"ghost": "exception 0x02"}
    assert "ghost" not in snap.points


async def test_a_waiter_wakes_on_the_next_change_only() -> None:
    states = DeviceStates()
    waiter = asyncio.create_task(states.changed(states.version))
    await asyncio.sleep(0)
    assert not waiter.done()
    states.count("d", "rejected")
    assert await asyncio.wait_for(waiter, 2) == 1
    assert await states.changed(0) == 1  # already past: no wait


def test_forget_drops_a_device_from_the_next_snapshot() -> None:
    states = DeviceStates()
    states.register("d", "modbus")
    assert "d" in states.snapshot()
    states.forget("d")
    assert "d" not in states.snapshot()


def test_made_up_devices_beyond_the_bound_are_ignored_but_registered_ones_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(devices, "MAX_DEVICES", 2)
    states = DeviceStates()
    states.register("a", "gpio")
    states.count("b", "events")
    states.count("c", "events")
    states.register("d", "modbus")
    assert set(states.snapshot()) == {"a", "b", "d"}
    assert states.ignored == 1


def test_readings_outside_their_range_are_counted_as_implausible() -> None:
    states = DeviceStates()
    states.register("noise-1", "modbus", bus="rs485-1", profile="noise-rs485")
    quiet = Reading("noise", 25.0, "dB(A)", Quality.BAD)  # humidity read as noise
    states.sample(Sample("noise-1", 1.0, (quiet,)))
    states.sample(Sample("noise-1", 2.0, (Reading("noise", 54.0, "dB(A)", Quality.GOOD),)))
    states.sample(Sample("noise-1", 3.0, (quiet, Reading("x", None, "", Quality.COMM_ERROR))))
    snap = states.snapshot()["noise-1"]
    assert snap.counters["implausible"] == 2
    assert (snap.bus, snap.profile) == ("rs485-1", "noise-rs485")


def test_registering_again_with_another_bus_or_profile_updates_it() -> None:
    states = DeviceStates()
    states.register("d", "modbus", bus="a", profile="th-rs485")
    version = states.version
    states.register("d", "modbus", bus="a", profile="th-rs485")
    assert states.version == version
    states.register("d", "modbus", bus="b")
    snap = states.snapshot()["d"]
    assert (snap.bus, snap.profile) == ("b", None)
