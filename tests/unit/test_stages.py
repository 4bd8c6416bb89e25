"""The pipeline's stages one by one, and the chain that runs them. All synchronous."""

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from gateway.config.modbus import PointConfig
from gateway.core.access import AccessEvent, DoorPolicy, DoorTracker
from gateway.core.clock import ManualClock
from gateway.core.devices import DeviceStates
from gateway.core.items import Item, RawSample
from gateway.core.messages import ContactEvent, DeviceStatus, Lane, Quality, Reading, Record, Sample
from gateway.pipeline.chain import Pipeline
from gateway.pipeline.dedup import Dedup, DedupMemory
from gateway.pipeline.doors import DoorTracking
from gateway.pipeline.privacy import Pseudonymise, Pseudonymiser
from gateway.pipeline.stages import Rules, Scale, Store, Track, Validate, door_contacts


def _pt(name: str, **fields: object) -> PointConfig:
    return PointConfig.model_validate({"name": name, "address": 0, "unit": "degC", **fields})


class Engine:
    """The alarm engine's inbox, recorded."""

    def __init__(self) -> None:
        self.seen: list[Sample | DeviceStatus | ContactEvent] = []

    def sample(self, sample: Sample) -> None:
        self.seen.append(sample)

    def status(self, status: DeviceStatus) -> None:
        self.seen.append(status)

    def contact(self, event: ContactEvent) -> None:
        self.seen.append(event)

    def covers(self, event: ContactEvent) -> bool:
        return event.input == "sos"


def _event(kind: str, **kw: object) -> AccessEvent:
    fields: dict[str, object] = {"device": "t1", "door": "", "kind": kind, "gateway_ts": 100.0}
    return AccessEvent(**(fields | kw))  # type: ignore[arg-type]


def test_validate_drops_items_without_a_device_or_a_finite_time() -> None:
    stage = Validate()
    good = Sample("d", 1.0, ())
    assert stage(good) is good
    assert stage(Sample("", 1.0, ())) is None
    assert stage(ContactEvent("d", "in", True, math.nan)) is None
    assert stage(DeviceStatus("d", True, math.inf, "ok")) is None
    assert stage.dropped == {"no_device": 1, "bad_ts": 2}


def test_scale_turns_a_raw_sample_into_judged_readings_and_passes_the_rest() -> None:
    stage = Scale({"d": {"t": _pt("t", scale=0.1), "h": _pt("h", range=[0, 100])}})
    out = stage(RawSample("d", 5.0, (("t", 215), ("h", 120))))
    assert out == Sample(
        "d",
        5.0,
        (Reading("t", 21.5, "degC", Quality.GOOD), Reading("h", 120, "degC", Quality.BAD)),
    )
    status = DeviceStatus("d", True, 5.0, "ok")
    assert stage(status) is status


def test_scale_drops_raw_values_of_unknown_devices_or_points() -> None:
    stage = Scale({"d": {"t": _pt("t")}})
    assert stage(RawSample("other", 5.0, (("t", 1),))) is None
    assert stage(RawSample("d", 5.0, (("ghost", 1),))) is None
    assert stage.dropped == {"unknown_device": 2}


def test_track_keeps_last_values_availability_and_event_counts() -> None:
    states = DeviceStates()
    stage = Track(states)
    stage(Sample("d", 5.0, (Reading("t", 21.5, "degC", Quality.GOOD),)))
    stage(DeviceStatus("d", False, 6.0, "timeout"))
    stage(ContactEvent("b", "call", True, 7.0))
    stage(_event("terminal_online"))
    snap = states.snapshot()
    assert snap["d"].points["t"].value == 21.5
    assert (snap["d"].online, snap["d"].since, snap["d"].last_error) == (False, 6.0, "timeout")
    assert snap["b"].counters["events"] == 1
    assert (snap["t1"].online, snap["t1"].since) == (True, 100.0)


def test_rules_shows_the_engine_samples_statuses_contacts_and_door_meanings() -> None:
    engine = Engine()
    stage = Rules(engine, DeviceStates())
    sample = Sample("d", 5.0, ())
    forced = _event("forced", door="gate")
    for item in (sample, forced, _event("terminal_offline")):
        assert stage(item) is item
    assert engine.seen == [
        sample,
        ContactEvent("gate", "forced", True, 100.0),
        DeviceStatus("t1", False, 100.0, "silent"),
    ]


def test_door_closed_clears_both_door_contacts_and_tamper_is_a_pulse() -> None:
    closed = door_contacts(_event("door_closed", door="gate"))
    assert [(c.input, c.active) for c in closed] == [("forced", False), ("held_open", False)]
    tamper = door_contacts(_event("tamper"))
    assert [(c.device, c.active) for c in tamper] == [("t1", True), ("t1", False)]
    assert door_contacts(_event("granted", door="gate", credential="face")) == []


def test_store_records_samples_statuses_and_door_events_but_not_contacts() -> None:
    records: list[Record] = []
    stage = Store(records.append, lambda: True)
    stage(Sample("d", 5.0, (Reading("t", 1, "degC", Quality.GOOD),)))
    stage(ContactEvent("b", "call", True, 7.0))
    stage(_event("terminal_online"))
    assert [(r.lane, r.topic) for r in records] == [
        (Lane.TELEMETRY, "telemetry/d"),
        (Lane.EVENT, "event/t1"),
        (Lane.EVENT, "device/t1/status"),
    ]


def test_the_chain_runs_stages_in_order_and_stops_at_a_drop() -> None:
    seen: list[str] = []

    def first(item: Item) -> Item | None:
        seen.append("first")
        return None if isinstance(item, ContactEvent) else item

    def second(item: Item) -> Item | None:
        seen.append("second")
        return item

    chain = Pipeline([first, second])
    chain(Sample("d", 1.0, ()))
    chain(ContactEvent("b", "call", True, 1.0))
    assert seen == ["first", "second", "first"]
    assert (chain.passed, chain.dropped) == (1, {"first": 1})


async def test_dedup_drops_a_repeat_within_its_source_window_and_writes_the_memory(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ids.json"
    stage = Dedup(DedupMemory(path, {"sos": (60.0, 10)}, ManualClock(wall=1061.0)))
    press = ContactEvent("btn-1", "sos", True, 1000.0, "e-1", source="sos")
    assert stage(press) is press
    assert stage(press) is None
    later = dataclasses.replace(press, ts=1061.0)  # out of the 60 s window: new again
    assert stage(later) is later
    for other in (
        dataclasses.replace(press, source="not-configured"),
        dataclasses.replace(press, event_id=""),  # nothing to recognise a repeat by
        Sample("btn-1", 1000.0, ()),
    ):
        assert stage(other) is other
        assert stage(other) is other
    assert stage.dropped == {"duplicate": 1}
    # the component's own reject counts, with the repeats it no longer sees as "duplicate"
    assert stage.merged({"duplicate": 0, "not_json": 2}) == {"duplicate": 1, "not_json": 2}
    stage.memory.close()
    saved = json.loads(path.read_text())
    assert [e[:3] for e in saved["buttons"]["sos"]] == [["btn-1", "e-1", True]]


NAMES = Pseudonymiser("site-1", bytes(range(32)))


def _reported(kind: str, person: str, **kw: object) -> AccessEvent:
    """A door event as a driver emits it: the raw person id not yet pseudonymised."""
    fields: dict[str, Any] = {"skew_limit": 60.0, "retention": 86400, "raw_person": person}
    return AccessEvent.build("t1", "gate", kind, 100.0, **(fields | kw))  # type: ignore[arg-type]


def test_pseudonymise_replaces_the_raw_id_and_what_embeds_it() -> None:
    stage = Pseudonymise(NAMES)
    raw = _reported(
        "granted", "R-77", credential="face", event_id="R-77@1200", snapshot_ref="s/R-77.jpg"
    )
    out = stage(raw)
    assert isinstance(out, AccessEvent)
    assert (out.raw_person, out.person) == ("", NAMES.pseudonym("R-77"))
    assert out.event_id == NAMES.token("R-77@1200", "event_id")
    assert (out.snapshot_ref, stage.snapshots_dropped) == ("", 1)
    assert (out.data_class, out.retention) == ("personal", 86400)
    assert "R-77" not in repr(out)
    short = stage(_reported("granted", "R7", credential="face", event_id="R7-1"))
    assert isinstance(short, AccessEvent)
    assert short.event_id == "R7-1"  # too short to be looked for: kept
    closed = _event("door_closed", door="gate")
    assert stage(closed) is closed


def test_the_store_stage_refuses_a_raw_person_id() -> None:
    with pytest.raises(ValueError, match="pseudonymisation"):
        Store(lambda r: None, lambda: True)(_reported("granted", "R-1", credential="face"))


def test_door_tracking_derives_forced_and_drops_a_repeated_report() -> None:
    tracker = DoorTracker([DoorPolicy("gate", 30.0, 5.0)])
    stage = DoorTracking(tracker, lambda: 1000.0)
    opened = _event("door_opened", door="gate")
    out = stage(opened)
    assert isinstance(out, list)
    assert [(e.kind, e.derived) for e in out if isinstance(e, AccessEvent)] == [
        ("door_opened", False),
        ("forced", True),
    ]
    assert stage(_event("forced", door="gate")) is None  # the terminal says it too: once
    assert stage.dropped == {"repeat": 1}
    assert stage(out[1]) is out[1]  # derived: not fed again


def test_the_chain_runs_each_derived_item_through_the_later_stages() -> None:
    seen: list[str] = []

    def split(item: Item) -> Item | list[Item] | None:
        return [item, Sample("derived", 1.0, ())] if isinstance(item, Sample) else item

    def record(item: Item) -> Item | None:
        seen.append(item.device)
        return item

    chain = Pipeline([split, record])
    chain(Sample("d", 1.0, ()))
    assert seen == ["d", "derived"]
    assert chain.passed == 2


async def test_door_dedup_keys_on_the_safe_event_id_per_terminal_config(tmp_path: Path) -> None:
    stage = Dedup(DedupMemory(tmp_path / "ids.json", {"fg": (60.0, 10)}, ManualClock(wall=100.0)))
    first = _event("granted", door="gate", credential="face", event_id="E-1", source="fg")
    assert stage(first) is first
    assert stage(first) is None
    assert stage(dataclasses.replace(first, device="t2")) is not None  # its own ids
    derived = dataclasses.replace(first, derived=True)
    assert stage(derived) is derived  # made by the gateway: never a replay
    with pytest.raises(AssertionError, match="pseudonymised"):
        stage(_reported("granted", "R-1", credential="face", event_id="E-2", source="fg"))
    stage.memory.close()


def test_rules_counts_contacts_no_rule_names_and_logs_the_first_of_each_device(
    caplog: pytest.LogCaptureFixture,
) -> None:
    states = DeviceStates()
    stage = Rules(Engine(), states)
    with caplog.at_level(logging.WARNING, logger="gateway.pipeline.stages"):
        for active in (True, False, True):
            stage(ContactEvent("btn-1", "stray", active, 1.0))
        stage(ContactEvent("btn-1", "sos", True, 1.0))  # a rule names it: not counted
        stage(ContactEvent("btn-2", "stray", True, 1.0))
        stage(_event("door_closed", door="gate"))  # a door's clearing contacts are not events
    snap = states.snapshot()
    assert snap["btn-1"].counters["unmatched"] == 3
    assert snap["btn-2"].counters["unmatched"] == 1
    assert "gate" not in snap
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert "input stray of device btn-1 matches no contact rule" in warned[0]


def test_rules_counts_no_welfare_sign_as_unmatched(caplog: pytest.LogCaptureFixture) -> None:
    """An "I am fine" button raises no alarm by design: health must not call it unmatched."""
    states = DeviceStates()
    stage = Rules(Engine(), states, {("flat-3", "fine"), ("flat-4", "")})
    with caplog.at_level(logging.WARNING, logger="gateway.pipeline.stages"):
        stage(ContactEvent("flat-3", "fine", True, 1.0))  # the sign the household names
        stage(ContactEvent("flat-4", "heartbeat", True, 1.0))  # any input of flat-4 counts
        stage(ContactEvent("flat-3", "stray", True, 1.0))  # not a sign: unmatched
    snap = states.snapshot()
    assert "flat-4" not in snap
    assert snap["flat-3"].counters == {"unmatched": 1}
    assert len(caplog.records) == 1
