"""The pure door-terminal mapping: both shipped shapes, every reject reason, privacy, and fuzz.

``parse`` gets a topic and bytes as the broker delivers them. The fuzz tests feed random bytes
and random vendor-shaped JSON whose person ids carry a marker, and check that the result is an
event or a ``Reject`` (nothing else) and that the raw person id appears nowhere in it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from drivers.doors.mapping import (
    REASONS,
    Heartbeat,
    Parsed,
    Reason,
    Reject,
    Terminal,
    parse,
    snapshot_ok,
    terminal_time,
    unlock_payload,
)
from gateway.config.doors import DoorTerminalConfig, resolve_door_payload
from gateway.core.access import AccessEvent
from gateway.pipeline.privacy import Pseudonymiser
from tests.support.fuzz import examples
from tests.support.privacy import private_parse

T0 = 1_795_806_700.0  # 2026-11-27 19:11:40 UTC, 03:11:40 in China
NAMES = Pseudonymiser("site-1", bytes(range(32)))

FLEET: dict[str, Any] = {  # facegate panels named by the topic; FG-A1 has two doors
    "kind": "door_terminal",
    "id": "facegate",
    "topic": "facegate/+/event",
    "heartbeat_topic": "facegate/+/heartbeat",
    "command_topic": "facegate/{terminal}/cmd",
    "device_from_topic": 1,
    "profile": "facegate-json",
    "doors": [
        {"id": "A1-main", "terminal": "FG-A1", "ref": 1},
        {"id": "A1-side", "terminal": "FG-A1", "ref": 2},
        {"id": "A2-main", "terminal": "FG-A2", "ref": 1},
    ],
}
QR: dict[str, Any] = {
    "kind": "door_terminal",
    "id": "QR-B2",
    "topic": "qrpass/v2/QR-B2/events",
    "heartbeat_topic": "qrpass/v2/QR-B2/status",
    "profile": "qrpass-v2",
    "doors": [{"id": "B2-east"}, {"id": "B2-west"}],
    "max_payload": 4096,
}
INLINE: dict[str, Any] = {  # a single-door gate with the fallbacks of an inline mapping
    "kind": "door_terminal",
    "id": "gate-c",
    "topic": "gate/c/evt",
    "heartbeat_topic": "gate/c/hb",
    "skew_limit": 5,
    "doors": [{"id": "C-gate"}],
    "payload": {
        "event_id": "n",
        "kind": "type",
        "kind_values": [
            {"value": "ok", "kind": "granted"},
            {"value": "open", "kind": "door_opened"},
        ],
        "kind_default": "denied",
        "credential": "cred",
        "credential_default": "card",
        "person": "who",
        "time": "t",
    },
}
TERMINALS = [
    Terminal.resolve(cfg, resolve_door_payload(cfg))
    for cfg in (DoorTerminalConfig.model_validate(d) for d in (FLEET, QR, INLINE))
]


def fg(event_type: str, **kw: Any) -> dict[str, Any]:
    """A facegate event of panel FG-A1."""
    return {
        "eventId": "FG-A1-000123",
        "deviceSn": "FG-A1",
        "doorNo": 1,
        "eventType": event_type,
        "time": "2026-11-28 03:12:05",
    } | kw


def qr(code: int, **body: Any) -> dict[str, Any]:
    return {
        "header": {"msgId": "9b1f0c2e-5d7a", "ts": 1_795_806_725_123, "type": "ACCESS"},
        "body": {"door": {"id": "B2-east"}, "result": {"code": code}} | body,
    }


def outcome(topic: str, payload: bytes | dict[str, Any]) -> Parsed | Reason:
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    try:
        return private_parse(TERMINALS, topic, data, T0, NAMES)
    except Reject as rej:
        return rej.reason


def event(topic: str, payload: bytes | dict[str, Any]) -> AccessEvent:
    parsed = outcome(topic, payload)
    assert isinstance(parsed, Parsed), parsed
    assert isinstance(parsed.message, AccessEvent)
    return parsed.message


# -- the shipped shapes -----------------------------------------------------------------------


def test_a_facegate_face_pass() -> None:
    doc = fg(
        "FACE_PASS",
        personId="R-3-1201-02",
        personName="Wang",
        verifyMode="face",
        captureUrl="snap/20261128/000123.jpg",
        faceImage="/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8U",
    )
    got = event("facegate/FG-A1/event", doc)
    assert got == AccessEvent(
        device="FG-A1",
        door="A1-main",
        kind="granted",
        gateway_ts=T0,
        credential="face",
        person=NAMES.pseudonym("R-3-1201-02"),
        snapshot_ref="snap/20261128/000123.jpg",
        terminal_ts=1_795_806_725.0,  # 03:12:05 at +08:00
        skew=25.0,
        skew_flagged=False,
        event_id="FG-A1-000123",
        data_class="personal",
        retention=30 * 86400,
    )
    for secret in ("R-3-1201-02", "Wang", "/9j/4AAQ"):
        assert secret not in repr(got)


@pytest.mark.parametrize(
    ("doc", "kind", "reason", "credential", "door"),
    [
        (fg("QR_PASS", verifyMode="qr"), "granted", "", "qr", "A1-main"),
        (fg("BUTTON_OPEN", verifyMode="button"), "granted", "", "none", "A1-main"),
        (
            fg("FACE_DENY", denyReason="EXPIRED", verifyMode="face"),
            "denied",
            "expired",
            "face",
            "A1-main",
        ),
        (fg("FACE_DENY", denyReason="BLACKLIST"), "denied", "blacklisted", "none", "A1-main"),
        (fg("QR_DENY", denyReason="ANTI_PASSBACK"), "denied", "antipassback", "none", "A1-main"),
        (fg("CARD_DENY", denyReason="TIME_LIMIT"), "denied", "outside_schedule", "none", "A1-main"),
        (fg("FACE_DENY", denyReason="NEW_CODE"), "denied", "other", "none", "A1-main"),
        (fg("FACE_DENY"), "denied", "other", "none", "A1-main"),
        (fg("DOOR_OPEN", doorNo=2), "door_opened", "", "none", "A1-side"),
        (fg("DOOR_CLOSE", doorNo=2), "door_closed", "", "none", "A1-side"),
        (fg("DOOR_FORCED"), "forced", "", "none", "A1-main"),
        (fg("DOOR_TIMEOUT"), "held_open", "", "none", "A1-main"),
        (fg("TAMPER", doorNo=None), "tamper", "", "none", ""),  # a two-door panel: no door
    ],
)
def test_facegate_kinds(
    doc: dict[str, Any], kind: str, reason: str, credential: str, door: str
) -> None:
    got = event("facegate/FG-A1/event", doc)
    assert (got.kind, got.reason, got.credential, got.door) == (kind, reason, credential, door)
    assert got.data_class == "operational"


def test_a_single_door_panel_needs_no_door_number() -> None:
    got = event("facegate/FG-A2/event", fg("TAMPER", doorNo=None))
    assert (got.device, got.door) == ("FG-A2", "A2-main")
    assert event("facegate/FG-A2/event", fg("FACE_PASS", doorNo=None)).door == "A2-main"


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        (0, "granted", ""),
        (1, "denied", "unknown_credential"),
        (2, "denied", "expired"),
        (3, "denied", "blacklisted"),
        (4, "denied", "antipassback"),
        (5, "denied", "outside_schedule"),
        (9, "denied", "other"),
        (100, "door_opened", ""),
        (101, "door_closed", ""),
        (102, "forced", ""),
        (103, "held_open", ""),
        (110, "tamper", ""),
    ],
)
def test_qrpass_codes(code: int, kind: str, reason: str) -> None:
    got = event("qrpass/v2/QR-B2/events", qr(code))
    assert (got.device, got.door, got.kind, got.reason) == ("QR-B2", "B2-east", kind, reason)
    assert got.terminal_ts == pytest.approx(1_795_806_725.123)
    assert got.skew == pytest.approx(25.123)
    assert got.event_id == "9b1f0c2e-5d7a"


def test_a_qrpass_grant_keeps_the_uid_pseudonymous() -> None:
    holder = {"uid": "u-88231", "name": "Li", "phone": "13800000000", "face": [1, 2]}
    doc = qr(
        0,
        credential={"type": "QR", "holder": holder},
        snapshot={"ref": "qp/2026/11/28/9b1f0c2e.jpg", "image": "iVBORw0KGgoAAAANSUhEUgAA"},
    )
    got = event("qrpass/v2/QR-B2/events", doc)
    assert (got.credential, got.person, got.snapshot_ref) == (
        "qr",
        NAMES.pseudonym("u-88231"),
        "qp/2026/11/28/9b1f0c2e.jpg",
    )
    for secret in ("u-88231", "Li", "13800000000", "iVBORw0KGgo"):
        assert secret not in repr(got)


def test_inline_mapping_fallbacks_and_skew() -> None:
    got = event("gate/c/evt", {"n": 5, "type": "weird", "cred": "palm", "who": 12345, "t": T0 + 6})
    assert (got.door, got.kind, got.reason, got.credential) == ("C-gate", "denied", "other", "card")
    assert (got.event_id, got.person) == ("5", NAMES.pseudonym("12345"))
    assert (got.skew, got.skew_flagged) == (6.0, True)
    plain = event("gate/c/evt", {"n": 6, "type": "open"})
    assert (plain.kind, plain.credential, plain.person, plain.terminal_ts) == (
        "door_opened",
        "none",
        "",
        None,
    )


def test_a_rotation_gives_both_pseudonyms() -> None:
    rotating = Pseudonymiser("site-1", bytes(range(50, 82)), previous=bytes(range(32)))
    data = json.dumps(fg("FACE_PASS", personId="R-1")).encode()
    parsed = private_parse(TERMINALS, "facegate/FG-A1/event", data, T0, rotating)
    assert isinstance(parsed.message, AccessEvent)
    assert (parsed.message.person, parsed.message.person_previous) == rotating.pseudonyms("R-1")
    assert parsed.message.person_previous == NAMES.pseudonym("R-1")


# -- rejects ----------------------------------------------------------------------------------

REJECTS: list[tuple[str, bytes | dict[str, Any], Reason]] = [
    ("facegate/FG-A1/other", fg("FACE_PASS"), "unknown_topic"),
    ("elsewhere", fg("FACE_PASS"), "unknown_topic"),
    ("facegate/FG-ZZ/event", fg("FACE_PASS"), "unknown_device"),  # no such panel configured
    ("facegate/a b/event", fg("FACE_PASS"), "unmapped"),
    ("qrpass/v2/QR-B2/events", b'{"pad": "' + b"A" * 5000 + b'"}', "too_large"),
    ("facegate/FG-A1/event", b"\xff\xfe{}", "not_utf8"),
    ("facegate/FG-A1/event", b"{not json", "not_json"),
    ("facegate/FG-A1/event", b"[" * 10_000 + b"]" * 10_000, "not_json"),
    ("facegate/FG-A1/event", b"[1, 2]", "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS") | {"eventType": None}, "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASSED"), "unmapped"),
    ("facegate/FG-A1/event", fg("face_pass"), "unmapped"),  # case-sensitive
    ("facegate/FG-A1/event", fg("FACE_PASS", doorNo="1"), "unmapped"),  # type-exact
    ("facegate/FG-A1/event", fg("FACE_PASS", doorNo=3), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", doorNo=None), "unmapped"),  # two doors: which?
    ("facegate/FG-A1/event", fg("FACE_PASS", eventId=1.5), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", eventId=""), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", eventId=None), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", eventId="x" * 129), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", personId=["R-1"]), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", personId=True), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", personId="R" * 257), "unmapped"),
    ("facegate/FG-A1/event", fg("FACE_PASS", verifyMode="iris"), "unmapped"),
    ("qrpass/v2/QR-B2/events", qr(7), "unmapped"),  # a code not listed
    ("qrpass/v2/QR-B2/events", qr(0, door={"id": "B3"}), "unmapped"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), REJECTS)
def test_reject(topic: str, payload: bytes | dict[str, Any], reason: Reason) -> None:
    assert outcome(topic, payload) == reason


def test_every_reason_is_covered_and_the_raw_person_waits_for_the_pipeline() -> None:
    # a repeated event id ("duplicate") is the pipeline's dedup stage's (tests/unit/test_stages),
    # "rate_limited" the component's (tests/unit/test_limit.py, tests/faults/test_flood.py),
    # "shed" the transport's (tests/integration/test_transport_reader.py)
    assert {r for _, _, r in REJECTS} | {"duplicate", "rate_limited", "shed"} == set(REASONS)
    data = json.dumps(fg("FACE_PASS", personId="R-1", eventId="E-9")).encode()
    parsed = parse(TERMINALS, "facegate/FG-A1/event", data, T0)
    assert isinstance(parsed.message, AccessEvent)
    assert (parsed.message.raw_person, parsed.message.person) == ("R-1", "")
    assert parsed.message.data_class == "personal"  # its retention applies from the start
    assert parsed.message.source == "facegate"
    assert "R-1" not in repr(parsed)  # repr hides the raw id


def test_reject_details_show_no_payload_values() -> None:
    for doc in (
        fg("FACE_PASS", personId=["R-SECRET-1"]),
        fg("SECRET_TYPE"),
        fg("FACE_PASS", verifyMode="SECRET_MODE"),
        fg("FACE_PASS", doorNo="SECRET_DOOR"),
        fg("FACE_PASS", eventId="SECRET\n"),
    ):
        with pytest.raises(Reject) as info:
            parse(TERMINALS, "facegate/FG-A1/event", json.dumps(doc).encode(), T0)
        assert info.value.reason == "unmapped"
        assert "SECRET" not in str(info.value)


# -- privacy details --------------------------------------------------------------------------


def test_an_event_id_that_embeds_the_person_becomes_a_token() -> None:
    got = event("facegate/FG-A1/event", fg("FACE_PASS", personId="R-77", eventId="R-77@1200"))
    assert got.event_id == NAMES.token("R-77@1200", "event_id")
    assert "R-77" not in repr(got)


@pytest.mark.parametrize(
    "ref",
    [
        "data:image/jpeg;base64,/9j/4AAQ",
        "DATA:image/png;base64,iVBO",
        "/9j/4AAQSkZJRgABAQAAAQABAAD2wBDAAgGBgcGBQgHBwcJCQ",
        "x" * 129,
        "snap/\u4e00.jpg",
        "snap/\n1.jpg",
        "snap/R-3-1201-02/1.jpg",  # names the person
    ],
)
def test_snapshot_content_is_dropped_and_the_event_kept(ref: str) -> None:
    doc = fg("FACE_PASS", personId="R-3-1201-02", captureUrl=ref)
    parsed = outcome("facegate/FG-A1/event", doc)
    assert isinstance(parsed, Parsed)
    assert isinstance(parsed.message, AccessEvent)
    assert (parsed.message.kind, parsed.message.snapshot_ref, parsed.snapshot_dropped) == (
        "granted",
        "",
        True,
    )


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("snap/20261128/000123.jpg", True),
        ("https://10.0.0.5/capture/2026/11/28/FG8A1234/000123.jpg", True),
        ("9b1f0c2e5d7a4c1e8f3a0d2b6e4a7c119b1f0c2e", True),  # a hex id, one case
        ("9b1f0c2e-5d7a-4c1e-8f3a-0d2b6e4a7c11", True),
        ("AbCdEfGh12345678AbCdEfGh12345678", False),  # 32 random-looking characters
        ("", False),
    ],
)
def test_snapshot_ok(ref: str, ok: bool) -> None:
    assert snapshot_ok(ref) is ok


def test_dropped_fields_are_never_read() -> None:
    """A face image of any shape cannot make an event fail: the mapping never looks at it."""
    for junk in ([["deep"] * 3], {"x": None}, 1e308, "A" * 50_000):
        assert event("facegate/FG-A1/event", fg("FACE_PASS", faceImage=junk)).kind == "granted"


# -- time -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (1_795_806_725, "epoch_s", 1_795_806_725.0),
        (1_795_806_725.5, "epoch_s", 1_795_806_725.5),
        (1_795_806_725_123, "epoch_ms", 1_795_806_725.123),
        ("2026-11-28 03:12:05", "iso8601", 1_795_806_725.0),
        ("2026-11-28T03:12:05+08:00", "iso8601", 1_795_806_725.0),
        ("2026-11-27T19:12:05Z", "iso8601", 1_795_806_725.0),
        ("2026-11-28 03:12", "iso8601", 1_795_806_720.0),
        ("28/11/2026", "iso8601", None),
        ("1795806725", "epoch_s", None),
        (True, "epoch_s", None),
        (float("nan"), "epoch_s", None),
        (float("inf"), "epoch_ms", None),
        (10**400, "epoch_s", None),
        (1_795_806_725, "iso8601", None),
        (None, "epoch_s", None),
    ],
)
def test_terminal_time(value: object, fmt: str, expected: float | None) -> None:
    got = terminal_time(value, fmt, "+08:00")
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_naive_times_take_the_configured_offset() -> None:
    assert (
        terminal_time("2026-11-28 03:12:05", "iso8601", "-03:30") == 1_795_806_725.0 + 11.5 * 3600
    )


def test_an_unreadable_terminal_time_keeps_the_event() -> None:
    got = event("facegate/FG-A1/event", fg("FACE_PASS", time="yesterday"))
    assert (got.kind, got.terminal_ts, got.skew, got.skew_flagged) == ("granted", None, None, False)


# -- heartbeats -------------------------------------------------------------------------------


def beat(topic: str, payload: bytes | dict[str, Any]) -> Heartbeat:
    parsed = outcome(topic, payload)
    assert isinstance(parsed, Parsed), parsed
    assert isinstance(parsed.message, Heartbeat)
    return parsed.message


def test_heartbeats() -> None:
    hb = beat("facegate/FG-A2/heartbeat", {"status": "online", "time": "2026-11-28 03:11:00"})
    assert hb == Heartbeat("FG-A2", T0, 1_795_806_660.0, True)
    assert beat("facegate/FG-A2/heartbeat", {"status": "offline"}).online is False
    assert beat("facegate/FG-A2/heartbeat", {}).online is True
    qr_hb = beat(
        "qrpass/v2/QR-B2/status", {"header": {"ts": 1_795_806_720_000}, "body": {"online": False}}
    )
    assert (qr_hb.terminal_ts, qr_hb.online) == (1_795_806_720.0, False)
    assert beat("qrpass/v2/QR-B2/status", {"body": {"online": 0}}).online is True  # type-exact
    # a mapping without heartbeat fields takes any payload, even one that is no text
    assert beat("gate/c/hb", b"\xff\x00") == Heartbeat("gate-c", T0, None, True)
    assert outcome("gate/c/hb", b"x" * 262_145) == "too_large"
    assert outcome("facegate/FG-A2/heartbeat", b"alive") == "not_json"
    assert outcome("facegate/FG-Z/heartbeat", b"{}") == "unknown_device"


# -- unlock commands --------------------------------------------------------------------------


def test_unlock_payload_keeps_types_and_fills_text() -> None:
    template = TERMINALS[1].mapping.unlock
    assert template is not None
    values: dict[str, Any] = {"door": "B2-east", "seconds": 5, "reason": "fire", "request_id": "r1"}
    values |= {"ts_ms": 1_795_806_700_000, "expires_ms": 1_795_806_710_000}
    assert json.loads(unlock_payload(template, values)) == {
        "header": {
            "msgId": "r1",
            "ts": 1_795_806_700_000,
            "type": "COMMAND",
            "expires": 1_795_806_710_000,
        },
        "body": {"cmd": "UNLOCK", "door": {"id": "B2-east"}, "duration": 5, "note": "fire"},
    }
    mixed: dict[str, JsonValue] = {"text": "open {door} for {seconds} s", "{door}": ["{seconds}"]}
    mixed["n"] = None
    assert json.loads(unlock_payload(mixed, {"door": 1, "seconds": 5})) == {
        "text": "open 1 for 5 s",
        "1": [5],
        "n": None,
    }
    assert json.loads(unlock_payload({"x": "{nope} {door}"}, {"door": "d"})) == {"x": "{nope} d"}


# -- fuzz -------------------------------------------------------------------------------------

TOPICS = [
    "facegate/FG-A1/event",
    "facegate/FG-A2/event",
    "facegate/FG-A1/heartbeat",
    "qrpass/v2/QR-B2/events",
    "qrpass/v2/QR-B2/status",
    "gate/c/evt",
    "gate/c/hb",
    "facegate/FG-ZZ/event",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["FACE_PASS", "DOOR_OPEN", "face", 0, 1, 102, "", "\ud800", "data:x"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
person_ids = st.text(min_size=1, max_size=12).map(lambda s: "PID" + s)


def _often(*good: object) -> st.SearchStrategy[object]:
    """A valid value four times in five, any JSON scalar otherwise."""
    return st.integers(0, 4).flatmap(lambda n: st.sampled_from(good) if n else scalars)


@st.composite
def vendor_messages(draw: st.DrawFn) -> tuple[str, str, object]:
    """(topic, raw person id, document) in one of the shipped shapes, values fuzzed."""
    pid = draw(person_ids)
    embedded = st.sampled_from([f"{pid}-evt", f"snap/{pid}.jpg", f"x{pid}x"])
    ids = _often("E-1", 7) | embedded
    if draw(st.booleans()):
        doc = draw(
            st.fixed_dictionaries(
                {
                    "eventId": ids,
                    "eventType": _often("FACE_PASS", "FACE_DENY", "DOOR_OPEN", "TAMPER"),
                    "doorNo": _often(1, 2),
                    "personId": st.just(pid),
                    "verifyMode": _often("face", "qr", "button"),
                    "time": _often("2026-11-28 03:12:05", "2026-11-28T03:12:05Z"),
                    "captureUrl": _often("snap/1.jpg", "data:image/png;base64,AA") | embedded,
                },
                optional={"denyReason": _often("EXPIRED"), "faceImage": json_values},
            )
        )
        return draw(st.sampled_from(TOPICS[:2])), pid, doc
    holder = st.fixed_dictionaries({"uid": st.just(pid)}, optional={"name": json_values})
    body = st.fixed_dictionaries(
        {
            "door": st.fixed_dictionaries({"id": _often("B2-east", "B2-west")}),
            "result": st.fixed_dictionaries({"code": _often(0, 2, 102)}),
            "credential": st.fixed_dictionaries({"type": _often("QR", "FACE"), "holder": holder}),
        },
        optional={"snapshot": st.fixed_dictionaries({"ref": embedded | _often("qp/1.jpg")})},
    )
    header = st.fixed_dictionaries({"msgId": ids, "ts": _often(1_795_806_725_123)})
    doc = draw(st.fixed_dictionaries({"header": header, "body": body}))
    return "qrpass/v2/QR-B2/events", pid, doc


def _parse_or_reject(topic: str, payload: bytes) -> Parsed | Reject:
    try:
        return private_parse(TERMINALS, topic, payload, T0, NAMES)
    except Reject as rej:
        return rej


def _check(topic: str, payload: bytes, raw: str | None = None) -> None:
    """An event or heartbeat that is well formed, or a ``Reject``; never the raw person id."""
    parsed = _parse_or_reject(topic, payload)
    if isinstance(parsed, Reject):
        assert parsed.reason in REASONS
        assert raw is None or raw not in str(parsed)
        return
    msg = parsed.message
    if raw is not None:
        assert raw not in repr(parsed)
        texts = [
            v for v in (getattr(msg, f) for f in msg.__dataclass_fields__) if isinstance(v, str)
        ]
        assert all(raw not in text for text in texts)
    if isinstance(msg, AccessEvent):
        if raw is not None and msg.person:
            assert msg.person == NAMES.pseudonym(raw)
        assert len(msg.event_id) <= 128
        assert msg.event_id.isprintable()
        assert msg.snapshot_ref == "" or snapshot_ok(msg.snapshot_ref)
        assert msg.skew is None or math.isfinite(msg.skew)


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS) | st.text(max_size=30), payload=st.binary(max_size=300))
def test_parse_of_random_bytes_only_rejects(topic: str, payload: bytes) -> None:
    _check(topic, payload)


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS), doc=json_values)
def test_parse_of_random_json_only_rejects(topic: str, doc: object) -> None:
    _check(topic, json.dumps(doc).encode())


# 500 fixed examples in the suite (14 s at 3,000); HYPOTHESIS_PROFILE=explore draws 5,000 fresh
@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=vendor_messages())
def test_the_raw_person_id_never_passes_the_pseudonymise_stage(
    message: tuple[str, str, object],
) -> None:
    topic, raw, doc = message
    _check(topic, json.dumps(doc).encode(), raw)
    parsed = outcome(topic, json.dumps(doc).encode())
    if isinstance(parsed, Parsed) and isinstance(parsed.message, AccessEvent):
        assert parsed.message.person == NAMES.pseudonym(raw)


# -- malformed heartbeats and impossible terminal times (fault finding 13) ------------------


def test_a_malformed_heartbeat_is_no_sign_of_life() -> None:
    assert outcome("facegate/FG-A2/heartbeat", {"deviceSn": 1, "status": [], "time": 12}) == (
        "unmapped"
    )
    assert outcome("facegate/FG-A2/heartbeat", {"status": {"x": 1}}) == "unmapped"
    assert outcome("facegate/FG-A2/heartbeat", {"status": 1.5}) == "unmapped"
    assert outcome("facegate/FG-A2/heartbeat", {"status": "online", "time": 12}) == "unmapped"
    assert beat("facegate/FG-A2/heartbeat", {"status": "online"}).online is True


def test_an_impossible_terminal_time_gives_way_to_the_arrival_time() -> None:
    got = event("facegate/FG-A1/event", fg("FACE_PASS", time="9999-12-31 00:00:00"))
    assert (got.gateway_ts, got.terminal_ts, got.skew, got.skew_flagged) == (T0, None, None, True)
    reset = event("facegate/FG-A1/event", fg("FACE_PASS", time="2000-01-01 00:00:00"))
    assert (reset.terminal_ts, reset.skew_flagged) == (None, True)
    hb = beat("facegate/FG-A2/heartbeat", {"status": "online", "time": "9999-12-31 00:00:00"})
    assert (hb.gateway_ts, hb.terminal_ts, hb.online) == (T0, None, True)
    # a few hours off is believed and flagged, as before
    late = event("facegate/FG-A1/event", fg("FACE_PASS", time="2026-11-28 06:12:05"))
    assert late.skew == pytest.approx(3 * 3600 + 25.0)
    assert late.skew_flagged
