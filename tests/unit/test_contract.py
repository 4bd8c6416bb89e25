"""What ``render`` publishes is valid JSON that matches the shipped JSON Schemas."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

# jsonschema ships no type information and the test extras have no stubs for it
from jsonschema import Draft202012Validator

import gateway
from gateway.core.contract import (
    SCHEMA_VERSION,
    Identity,
    iso,
    points_json,
    refused_record,
    render,
    render_provisional,
    status_record,
    telemetry_record,
)
from gateway.core.messages import DeviceStatus, Json, Lane, Quality, Reading, Record, Sample
from gateway.store.codec import decode_points, encode
from gateway.store.outbox import Row

SCHEMAS = Path(gateway.__file__).parent / "schemas"
EPOCH = "0123456789abcdef"
IDENT = Identity(root="cgw", site_id="site-7", gateway_id="gw-01", epoch=EPOCH)
ENVELOPE = ["v", "gateway_id", "site_id", "epoch", "lane", "seq", "ts", "clock_synced"]
TS = 1800000000.5  # 2027-01-15T08:00:00.500Z


def _validator(name: str) -> Any:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(name: str, payload: object) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in _validator(name).iter_errors(payload)]


def _row(rec: Record, seq: int = 42) -> Row:
    """The record as the store hands it to a sink."""
    return Row(
        id=7,
        lane=rec.lane,
        seq=seq,
        topic=rec.topic,
        device=rec.device,
        ts=rec.ts,
        synced=rec.clock_synced,
        retain=rec.retain,
        fields=rec.fields,
        points_json=points_json(rec.points) if rec.lane is Lane.TELEMETRY else "",
    )


def _sample() -> Sample:
    return Sample(
        device="th-3f",
        ts=TS,
        readings=(
            Reading("temperature", 21.5, "℃", Quality.GOOD),
            Reading("humidity", None, "%RH", Quality.COMM_ERROR),
            Reading("pm25", 9999, "ug/m3", Quality.BAD),
            Reading("door", True, "", Quality.GOOD),
            Reading("state", "idle", "", Quality.STALE),
        ),
    )


def test_telemetry_renders_to_schema_valid_json() -> None:
    topic, payload = render(IDENT, _row(telemetry_record(_sample(), synced=True)))
    assert topic == "cgw/site-7/gw-01/telemetry/th-3f"
    msg = json.loads(payload.decode("utf-8"))
    assert _errors("telemetry.json", msg) == []
    assert list(msg)[: len(ENVELOPE)] == ENVELOPE  # the envelope comes first
    assert {k: msg[k] for k in ENVELOPE} == {
        "v": SCHEMA_VERSION,
        "gateway_id": "gw-01",
        "site_id": "site-7",
        "epoch": EPOCH,
        "lane": "telemetry",
        "seq": 42,
        "ts": "2027-01-15T08:00:00.500Z",
        "clock_synced": True,
    }
    assert msg["device"] == "th-3f"
    assert msg["points"] == [
        {"name": "temperature", "value": 21.5, "unit": "℃", "quality": "good"},
        {"name": "humidity", "value": None, "unit": "%RH", "quality": "comm_error"},
        {"name": "pm25", "value": 9999, "unit": "ug/m3", "quality": "bad"},
        {"name": "door", "value": True, "unit": "", "quality": "good"},
        {"name": "state", "value": "idle", "unit": "", "quality": "stale"},
    ]


def test_comm_error_point_is_null_on_the_wire_never_0() -> None:
    _, payload = render(IDENT, _row(telemetry_record(_sample(), synced=False)))
    assert b'{"name":"humidity","value":null,"unit":"%RH","quality":"comm_error"}' in payload
    assert b'"clock_synced":false' in payload
    assert "℃".encode() in payload  # UTF-8, not \\u escapes


def test_telemetry_schema_refuses_a_comm_error_with_a_value() -> None:
    _, payload = render(IDENT, _row(telemetry_record(_sample(), synced=True)))
    msg = json.loads(payload)
    msg["points"][1]["value"] = 0
    assert _errors("telemetry.json", msg) == ["$.points[1].value: 0 is not of type 'null'"]


def test_telemetry_refuses_nan() -> None:
    sample = Sample("d", TS, (Reading("x", float("nan"), "", Quality.GOOD),))
    with pytest.raises(ValueError, match="not JSON compliant"):
        telemetry_record(sample, synced=True)


@pytest.mark.parametrize(
    ("online", "reason", "state"),
    [(False, "timeout", "offline"), (True, "ok", "online")],
)
def test_device_status_renders_to_schema_valid_json(online: bool, reason: str, state: str) -> None:
    rec = status_record(DeviceStatus("th-3f", online, TS, reason), synced=True)
    assert (rec.lane, rec.retain, rec.device) == (Lane.EVENT, True, "th-3f")
    topic, payload = render(IDENT, _row(rec, seq=3))
    assert topic == "cgw/site-7/gw-01/device/th-3f/status"
    msg = json.loads(payload)
    assert _errors("device-status.json", msg) == []
    assert list(msg) == [*ENVELOPE, "device", "state", "reason"]
    assert (msg["lane"], msg["seq"], msg["ts"]) == ("event", 3, "2027-01-15T08:00:00.500Z")
    assert (msg["device"], msg["state"], msg["reason"]) == ("th-3f", state, reason)


def test_a_refused_message_is_reported_by_its_lane_seq_and_topic() -> None:
    alarm = Record(
        Lane.ALARM, "alarm/4be1c0d2", TS - 60, True, "btn-3f", fields={"state": "raised"}
    )
    topic, payload = render(IDENT, _row(alarm, seq=12))
    rec = refused_record(_row(alarm, seq=12), topic, len(payload), 3, TS, synced=True)
    assert (rec.lane, rec.retain) == (Lane.EVENT, False)
    topic, body = render(IDENT, _row(rec, seq=5))
    assert topic == "cgw/site-7/gw-01/publish-refused"
    msg = json.loads(body)
    assert _errors("publish-refused.json", msg) == []
    fields = ["refused_lane", "refused_seq", "refused_topic", "refused_ts", "bytes", "attempts"]
    assert list(msg) == [*ENVELOPE, *fields]
    assert [msg[f] for f in fields] == [
        "alarm", 12, "cgw/site-7/gw-01/alarm/4be1c0d2", "2027-01-15T07:59:00.500Z", len(payload), 3
    ]  # fmt: skip


def test_schemas_tell_the_kinds_apart() -> None:
    _, status = render(IDENT, _row(status_record(DeviceStatus("d", False, TS, "x"), True)))
    _, telemetry = render(IDENT, _row(telemetry_record(_sample(), True)))
    assert _errors("telemetry.json", json.loads(status))
    assert _errors("device-status.json", json.loads(telemetry))


def test_gateway_status_payload_matches_its_schema() -> None:
    msg = json.loads(IDENT.status_payload("offline", TS))
    assert _errors("status.json", msg) == []
    assert msg == {
        "v": 1,
        "contract": "1.4",
        "gateway_id": "gw-01",
        "site_id": "site-7",
        "epoch": EPOCH,
        "state": "offline",
        "ts": "2027-01-15T08:00:00.500Z",
    }


def _alarm_record() -> Record:
    fields: dict[str, Json] = {
        "alarm_id": "a-17",
        "state": "raised",
        "previous": None,
        "note": "",
        "cause": "sos/b1/sos",
        "rule": "sos",
        "kind": "contact",
        "device": "b1",
        "severity": "critical",
        "latched": True,
        "active": True,
        "message": "紧急呼叫 / emergency input sos pressed",
        "value": True,
        "raised_at": iso(TS),
        "notified_at": None,
        "acked_at": None,
        "acked_by": None,
        "cleared_at": None,
        "time_to_ack_s": None,
        "repeats": 0,
        "escalation_step": 0,
    }
    return Record(Lane.ALARM, "alarm/a-17", TS, True, "b1", fields=fields)


def test_a_provisional_alarm_is_the_alarm_message_without_seq() -> None:
    """Contract 1.4: what the store could not take goes out at once, without a seq."""
    rec = _alarm_record()
    topic, payload = render_provisional(IDENT, rec)
    seq_topic, seq_payload = render(IDENT, _row(rec, seq=9))
    assert topic == "cgw/site-7/gw-01/alarm-provisional/a-17"
    assert seq_topic == "cgw/site-7/gw-01/alarm/a-17"
    msg, sequenced = json.loads(payload), json.loads(seq_payload)
    assert _errors("alarm-provisional.json", msg) == []
    assert _errors("alarm.json", msg) == ["$: 'seq' is a required property"]
    assert _errors("alarm-provisional.json", sequenced)  # a sequenced one is not provisional
    assert msg.pop("provisional") is True
    assert sequenced.pop("seq") == 9
    assert msg == sequenced  # the same transition: (alarm_id, state, ts) names it in both


def test_the_provisional_schema_is_the_alarm_schema_without_seq() -> None:
    """The two schemas cannot drift: one is the other with ``seq`` swapped for ``provisional``."""
    alarm = json.loads((SCHEMAS / "alarm.json").read_text(encoding="utf-8"))
    prov = json.loads((SCHEMAS / "alarm-provisional.json").read_text(encoding="utf-8"))
    assert prov["properties"].pop("provisional") == {
        "const": True,
        "description": "Published before the local buffer took it: no seq yet",
    }
    assert set(prov["required"]) == set(alarm["required"]) - {"seq"} | {"provisional"}
    del alarm["properties"]["seq"]
    assert prov["properties"] == alarm["properties"]


def test_identity_strings_are_json_escaped() -> None:
    ident = Identity(root="cgw", site_id='a"b', gateway_id="网关-1")
    _, payload = render(ident, _row(telemetry_record(_sample(), True)))
    msg = json.loads(payload)
    assert (msg["site_id"], msg["gateway_id"]) == ('a"b', "网关-1")


# -- iso() --------------------------------------------------------------------------------------

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (TS, "2027-01-15T08:00:00.500Z"),
        (1800000000.0, "2027-01-15T08:00:00.000Z"),
        (1700000000.123, "2023-11-14T22:13:20.123Z"),
    ],
)
def test_iso_is_utc_with_milliseconds(ts: float, text: str) -> None:
    assert iso(ts) == text


@given(st.floats(0, 4102444800))  # 1970 .. 2100
def test_iso_matches_the_schema_pattern_and_parses_back(ts: float) -> None:
    text = iso(ts)
    assert ISO.fullmatch(text)
    back = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert back.utcoffset() == timedelta(0)
    # fromtimestamp rounds to the microsecond, then the milliseconds are truncated
    assert -1e-6 <= ts - back.timestamp() < 0.001 + 1e-6


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_readings = st.builds(
    Reading,
    name=st.text(min_size=1, max_size=8),
    value=_values,
    unit=st.text(max_size=4),
    quality=st.sampled_from(Quality),
)


@given(readings=st.lists(_readings, max_size=5))
def test_telemetry_from_stored_points_renders_the_v1_bytes(readings: list[Reading]) -> None:
    """Stored as fields and rendered by the sink: the bytes the v1 contract always had."""
    rec = telemetry_record(Sample("th-1", TS, tuple(readings)), synced=True)
    stored = dataclasses.replace(rec, points=decode_points(encode(rec)))
    assert stored.points == rec.points
    _, payload = render(IDENT, _row(stored))
    points = [
        {"name": r.name, "value": r.value, "unit": r.unit, "quality": r.quality.value}
        for r in readings
    ]
    # the stored form is the contract's points array, byte for byte, so the sink splices it
    assert encode(rec) == json.dumps(points, separators=(",", ":"), ensure_ascii=False)
    body = json.dumps(
        {"device": "th-1", "points": points},
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    assert payload.endswith(("," + body[1:]).encode())


@given(
    ts=st.one_of(
        st.floats(0, 2**33, allow_nan=False),
        st.builds(
            lambda s, f: s + f,
            st.integers(0, 2**33),
            st.sampled_from([0.0005, 0.9995, 0.0000005, 0.9999995, 0.999999, 0.0009995]),
        ),
    )
)
def test_iso_is_the_datetime_text(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    assert iso(ts) == expected.replace("+00:00", "Z")
