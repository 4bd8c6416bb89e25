"""DoorTerminals against a real mosquitto: two vendor shapes, timers, bad input, unlock, privacy.

Each test runs ``DoorTerminals.run()`` in-process as a task (cancelled and awaited at the end),
publishes as the terminals would (plain aiomqtt clients, QoS 1) and reads what reached
``emit`` from a queue, past the pipeline stages door events pass in the gateway (pseudonymise,
dedup, door tracking). Time is a ``ManualClock``: held-open and heartbeat timeouts are due when
the test moves the clock, and the component's timer (every 20 ms of real time) then emits them,
so the test awaits the event instead of sleeping. A test that must know a message was rejected
publishes a good one after it and awaits that (one publisher's QoS 1 messages keep their order).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.doors.mapping import REASONS, Reason
from drivers.doors.terminals import DoorTerminals, NotConnected, UnlockRefused
from gateway.config.doors import DoorTerminalConfig
from gateway.config.mqtt_devices import LocalBrokerConfig
from gateway.core.access import AccessEvent
from gateway.core.clock import ManualClock
from gateway.core.items import Item
from gateway.pipeline.chain import Pipeline
from gateway.pipeline.dedup import Dedup, DedupMemory
from gateway.pipeline.doors import DoorTracking
from gateway.pipeline.privacy import Pseudonymise, Pseudonymiser
from tests.support.mosquitto import Mosquitto

T0 = 1_800_000_000.0  # the component's wall clock (a ManualClock)
CST = timezone(timedelta(hours=8))
NAMES = Pseudonymiser("site-1", bytes(range(32)))
RAW_IDS = ("R-3-1201-02", "u-88231", "R-SECRET-9")
_ids = itertools.count()

FACEGATE: dict[str, Any] = {
    "kind": "door_terminal",
    "id": "facegate",
    "topic": "facegate/+/event",
    "heartbeat_topic": "facegate/+/heartbeat",
    "command_topic": "facegate/{terminal}/cmd",
    "device_from_topic": 1,
    "profile": "facegate-json",
    "max_payload": 65536,
    "doors": [
        {"id": "A1-main", "terminal": "FG-A1", "ref": 1},
        {"id": "A1-side", "terminal": "FG-A1", "ref": 2, "escape_route": True},
    ],
}
QRPASS: dict[str, Any] = {
    "kind": "door_terminal",
    "id": "QR-B2",
    "topic": "qrpass/v2/QR-B2/events",
    "heartbeat_topic": "qrpass/v2/QR-B2/status",
    "command_topic": "qrpass/v2/QR-B2/commands",
    "profile": "qrpass-v2",
    "doors": [{"id": "B2-east"}],
}
FG_EVENTS = "facegate/FG-A1/event"
QR_EVENTS = "qrpass/v2/QR-B2/events"


# -- helpers ----------------------------------------------------------------------------------


def local_time(wall: float) -> str:
    """A facegate time stamp: local time (+08:00) without an offset."""
    return datetime.fromtimestamp(wall, CST).strftime("%Y-%m-%d %H:%M:%S")


def fg(event_type: str, event_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "deviceSn": "FG-A1",
        "doorNo": 1,
        "eventType": event_type,
        "time": local_time(T0 + 2),
    } | kw


def face_pass(event_id: str, person: str = "R-3-1201-02", **kw: Any) -> dict[str, Any]:
    return (
        fg(
            "FACE_PASS",
            event_id,
            personId=person,
            personName="Wang",
            verifyMode="face",
            captureUrl=f"snap/{event_id}.jpg",
            faceImage="/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8U",
        )
        | kw
    )


def qr(code: int, msg_id: str, uid: str = "u-88231") -> dict[str, Any]:
    return {
        "header": {"msgId": msg_id, "ts": int(T0 * 1000) - 45_000, "type": "ACCESS"},
        "body": {
            "door": {"id": "B2-east"},
            "result": {"code": code},
            "credential": {"type": "QR", "holder": {"uid": uid, "name": "Li"}},
        },
    }


@dataclass(frozen=True)
class Stages:
    """The pipeline stages door events pass in the gateway before anything else sees them."""

    private: Pseudonymise
    dedup: Dedup
    tracking: DoorTracking


_STAGES: dict[int, Stages] = {}  # by id() of the component ``make`` built them for


def make(broker: Mosquitto, dedup: Path, clock: ManualClock | None = None) -> DoorTerminals:
    """The component, and (``stages``) its pipeline stages over the dedup memory ``dedup``."""
    cfg = LocalBrokerConfig.model_validate(
        {"host": broker.host, "port": broker.port, "keepalive": 5, "timeout": 5, "reconnect_max": 1}
    )
    terminals = [DoorTerminalConfig.model_validate(d) for d in (FACEGATE, QRPASS)]
    clock = clock or ManualClock(wall=T0)
    doors = DoorTerminals(cfg, terminals, client_id="cgw-test-doors", clock=clock, tick=0.02)
    windows = {t.id: (t.dedup_window, t.dedup_size) for t in terminals}
    _STAGES[id(doors)] = Stages(
        Pseudonymise(NAMES),
        Dedup(DedupMemory(dedup, windows, clock)),
        DoorTracking(doors.tracker, clock.mono),
    )
    return doors


def stages(doors: DoorTerminals) -> Stages:
    return _STAGES[id(doors)]


@contextlib.asynccontextmanager
async def running(doors: DoorTerminals) -> AsyncIterator[asyncio.Queue[AccessEvent]]:
    """``doors.run()`` as a task, subscribed before the body; cancelled and awaited after.

    Events reach the queue through the door stages of the gateway's pipeline; the dedup
    memory is written when the component has stopped.
    """
    events: asyncio.Queue[AccessEvent] = asyncio.Queue()
    own = stages(doors)

    def deliver(item: Item) -> Item:
        assert isinstance(item, AccessEvent)
        events.put_nowait(item)
        return item

    emit = Pipeline([own.private, own.dedup, own.tracking, deliver])
    task = asyncio.create_task(doors.run(emit), name="test:driver:door_terminals")
    ready = asyncio.create_task(doors.connected.wait(), name="test:ready")
    try:
        await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # a crash surfaces here
        assert ready.done(), "the component did not subscribe within 10 s"
        yield events
    finally:
        ready.cancel()
        task.cancel()
        await asyncio.wait({task, ready})
        own.dedup.memory.close()
        if not task.cancelled() and task.exception() is not None:
            raise AssertionError("the component crashed") from task.exception()


@contextlib.asynccontextmanager
async def terminal(broker: Mosquitto) -> AsyncIterator[aiomqtt.Client]:
    """A door terminal (or several) publishing to the local broker."""
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"terminal-{next(_ids)}", timeout=5
    ) as client:
        yield client


async def send(client: aiomqtt.Client, topic: str, payload: bytes | dict[str, Any]) -> None:
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    await client.publish(topic, data, qos=1)  # returns on the broker's PUBACK


async def next_event(events: asyncio.Queue[AccessEvent]) -> AccessEvent:
    async with asyncio.timeout(10):
        return await events.get()


async def take(events: asyncio.Queue[AccessEvent], n: int) -> list[tuple[str, str, str]]:
    """The next ``n`` events as (device, door, kind)."""
    got = [await next_event(events) for _ in range(n)]
    return [(e.device, e.door, e.kind) for e in got]


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after 15 s: {what}")
        await asyncio.sleep(0.01)


def no_raw_ids(text: str) -> None:
    for raw in RAW_IDS:
        assert raw not in text


# -- 1. both shapes ---------------------------------------------------------------------------


async def test_both_shapes_deliver_access_events(tmp_path: Path, mosquitto: Mosquitto) -> None:
    doors = make(mosquitto, tmp_path / "ids.json")
    async with running(doors) as events, terminal(mosquitto) as term:
        await send(term, FG_EVENTS, face_pass("E-1"))
        await send(term, FG_EVENTS, fg("DOOR_OPEN", "E-2"))
        await send(term, FG_EVENTS, fg("DOOR_CLOSE", "E-3"))
        await send(term, FG_EVENTS, fg("FACE_DENY", "E-4", denyReason="EXPIRED", personId="R-9"))
        await send(term, FG_EVENTS, fg("DOOR_FORCED", "E-5", doorNo=2))
        await send(term, FG_EVENTS, fg("TAMPER", "E-6", doorNo=None))
        await send(term, QR_EVENTS, qr(0, "q-1"))
        await send(term, QR_EVENTS, qr(3, "q-2"))
        await send(term, QR_EVENTS, qr(102, "q-3"))
        got = [await next_event(events) for _ in range(11)]
    assert [(e.device, e.door, e.kind) for e in got] == [
        ("FG-A1", "", "terminal_online"),
        ("FG-A1", "A1-main", "granted"),
        ("FG-A1", "A1-main", "door_opened"),  # within the grant window: no forced
        ("FG-A1", "A1-main", "door_closed"),
        ("FG-A1", "A1-main", "denied"),
        ("FG-A1", "A1-side", "forced"),
        ("FG-A1", "", "tamper"),
        ("QR-B2", "", "terminal_online"),
        ("QR-B2", "B2-east", "granted"),
        ("QR-B2", "B2-east", "denied"),
        ("QR-B2", "B2-east", "forced"),
    ]
    granted = got[1]
    assert (granted.person, granted.credential, granted.snapshot_ref, granted.event_id) == (
        NAMES.pseudonym("R-3-1201-02"),
        "face",
        "snap/E-1.jpg",
        "E-1",
    )
    assert (granted.gateway_ts, granted.terminal_ts, granted.skew, granted.skew_flagged) == (
        T0,
        T0 + 2,
        2.0,
        False,
    )
    assert (granted.data_class, granted.retention) == ("personal", 30 * 86400)
    assert (got[4].reason, got[4].person) == ("expired", NAMES.pseudonym("R-9"))
    assert (got[9].reason, got[9].credential, got[9].skew, got[9].skew_flagged) == (
        "blacklisted",
        "qr",
        -45.0,
        True,
    )
    assert got[2].data_class == "operational"
    assert doors.delivered == 11
    assert doors.rejected == dict.fromkeys(REASONS, 0)
    assert doors.skew == {"FG-A1": 2.0, "QR-B2": -45.0}
    for e in got:
        no_raw_ids(repr(e))
        assert "Wang" not in repr(e)


# -- 2. door timers ---------------------------------------------------------------------------


async def test_forced_then_held_open_then_closed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    clock = ManualClock(wall=T0)
    doors = make(mosquitto, tmp_path / "ids.json", clock)
    async with running(doors) as events, terminal(mosquitto) as term:
        await send(term, FG_EVENTS, fg("DOOR_OPEN", "E-1"))  # nobody was granted
        assert await take(events, 3) == [
            ("FG-A1", "", "terminal_online"),
            ("FG-A1", "A1-main", "door_opened"),
            ("FG-A1", "A1-main", "forced"),
        ]
        await send(term, FG_EVENTS, fg("DOOR_FORCED", "E-2"))  # the panel's own report, later
        await send(term, FG_EVENTS, face_pass("E-3", doorNo=2))
        assert await take(events, 1) == [("FG-A1", "A1-side", "granted")]
        assert doors.tracker.suppressed == 1
        clock.advance(60.0)  # A1-main has been open for its held_open_after
        held = await next_event(events)
        assert (held.door, held.kind, held.gateway_ts, held.event_id) == (
            "A1-main",
            "held_open",
            T0 + 60.0,
            "E-1/held",
        )
        await send(term, FG_EVENTS, fg("DOOR_CLOSE", "E-4"))
        assert await take(events, 1) == [("FG-A1", "A1-main", "door_closed")]
        clock.advance(10.0)
        await send(term, FG_EVENTS, face_pass("E-5"))
        await send(term, FG_EVENTS, fg("DOOR_OPEN", "E-6"))
        assert await take(events, 2) == [
            ("FG-A1", "A1-main", "granted"),
            ("FG-A1", "A1-main", "door_opened"),
        ]
        assert events.empty()


# -- 3. bad input -----------------------------------------------------------------------------


async def test_malformed_and_oversized_payloads_are_counted_and_the_loop_goes_on(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    doors = make(mosquitto, tmp_path / "ids.json")
    bad: list[tuple[str, bytes | dict[str, Any], Reason]] = [
        (FG_EVENTS, b"{not json", "not_json"),
        (FG_EVENTS, b"\xff\xfe{}", "not_utf8"),
        (FG_EVENTS, face_pass("X-1", eventType="FACE_PASSED", personId="R-SECRET-9"), "unmapped"),
        (FG_EVENTS, face_pass("X-2", personId=["R-SECRET-9"]), "unmapped"),
        (FG_EVENTS, face_pass("X-3", doorNo=7), "unmapped"),
        (FG_EVENTS, face_pass("X-5", personId="R-SECRET-9", faceImage="A" * 70_000), "too_large"),
        (QR_EVENTS, b"[" * 5000 + b"]" * 5000, "not_json"),
    ]
    async with running(doors) as events, terminal(mosquitto) as term:
        for topic, payload, _ in bad:
            await send(term, topic, payload)
        await send(term, FG_EVENTS, face_pass("good-1"))
        await send(term, QR_EVENTS, qr(0, "good-2"))
        assert await take(events, 4) == [
            ("FG-A1", "", "terminal_online"),  # a rejected message still shows it is alive
            ("QR-B2", "", "terminal_online"),
            ("FG-A1", "A1-main", "granted"),
            ("QR-B2", "B2-east", "granted"),
        ]
    expected = dict.fromkeys(REASONS, 0)
    for _, _, reason in bad:
        expected[reason] += 1
    assert doors.rejected == expected
    assert doors.delivered == 4
    logged = [r for r in caplog.records if r.name == "drivers.doors.terminals"]
    rejects = [r for r in logged if "rejected" in r.getMessage()]
    keys = [(r.__dict__["reason"], r.__dict__["device"]) for r in rejects]
    assert sorted(keys) == sorted(set(keys))  # once per (reason, terminal)
    assert ("too_large", "FG-A1") in keys
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        no_raw_ids(text)
        assert "FACE_PASSED" not in text  # payload values are never logged
        assert "AAAAAAAAAA" not in text


# -- 4. dedup ---------------------------------------------------------------------------------


async def test_messages_of_unknown_terminals_stay_at_the_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The entry subscribes each configured terminal's own topics, and drops the wildcards an
    older gateway left in its persistent session: an invented terminal's message never reaches
    the gateway (no ``unknown_device``), and a configured one's arrives once, not twice."""
    async with aiomqtt.Client(
        mosquitto.host, mosquitto.port, identifier="cgw-test-doors", clean_session=False
    ) as older:
        await older.subscribe([("facegate/+/event", 1), ("facegate/+/heartbeat", 1)])
    doors = make(mosquitto, tmp_path / "ids.json")
    async with running(doors) as events, terminal(mosquitto) as term:
        await send(term, "facegate/FG-ZZ/event", face_pass("X-1"))  # no such panel
        await send(term, "facegate/FG-ZZ/heartbeat", {})
        await send(term, FG_EVENTS, face_pass("E-1"))
        await send(term, FG_EVENTS, face_pass("E-2"))
        assert await take(events, 3) == [
            ("FG-A1", "", "terminal_online"),
            ("FG-A1", "A1-main", "granted"),
            ("FG-A1", "A1-main", "granted"),
        ]
        assert events.empty()
    assert doors.rejected == dict.fromkeys(REASONS, 0)
    assert doors.delivered == 3


async def test_repeated_event_ids_are_dropped_even_across_a_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    dedup = tmp_path / "state" / "door-ids.json"
    first = make(mosquitto, dedup)
    async with running(first) as events, terminal(mosquitto) as term:
        await send(term, FG_EVENTS, face_pass("E-1"))
        await send(term, FG_EVENTS, face_pass("E-1"))  # a QoS 1 redelivery
        await send(term, QR_EVENTS, qr(0, "E-1"))  # another terminal's ids are its own
        await send(term, FG_EVENTS, face_pass("E-2"))
        got = [await next_event(events) for _ in range(5)]
        assert [(e.device, e.kind, e.event_id) for e in got] == [
            ("FG-A1", "terminal_online", ""),
            ("FG-A1", "granted", "E-1"),
            ("QR-B2", "terminal_online", ""),
            ("QR-B2", "granted", "E-1"),
            ("FG-A1", "granted", "E-2"),
        ]
        assert stages(first).dedup.dropped["duplicate"] == 1
    saved = dedup.read_text()
    assert sorted(e[:2] for e in json.loads(saved)["buttons"]["facegate"]) == [
        ["FG-A1", "E-1"],
        ["FG-A1", "E-2"],
    ]
    no_raw_ids(saved)
    assert "Wang" not in saved

    # while the gateway is down the broker queues a replay of E-1 and a new E-3
    async with terminal(mosquitto) as term:
        await send(term, FG_EVENTS, face_pass("E-1"))
        await send(term, FG_EVENTS, face_pass("E-3"))
    second = make(mosquitto, dedup)
    async with running(second) as events:
        assert [(e.kind, e.event_id) for e in [await next_event(events) for _ in range(2)]] == [
            ("terminal_online", ""),
            ("granted", "E-3"),
        ]
        assert events.empty()
    assert stages(second).dedup.dropped["duplicate"] == 1


# -- 5. heartbeats ----------------------------------------------------------------------------


async def test_heartbeat_timeout_then_back_online_then_a_will(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = ManualClock(wall=T0)
    doors = make(mosquitto, tmp_path / "ids.json", clock)
    async with running(doors) as events, terminal(mosquitto) as term:
        beat = {"deviceSn": "FG-A1", "status": "online", "time": local_time(T0 - 40)}
        await send(term, "facegate/FG-A1/heartbeat", beat)
        assert await take(events, 1) == [("FG-A1", "", "terminal_online")]
        assert doors.skew["FG-A1"] == -40.0
        clock.advance(89.0)
        await send(term, "qrpass/v2/QR-B2/status", {"header": {"ts": 0}, "body": {"online": True}})
        assert await take(events, 1) == [("QR-B2", "", "terminal_online")]
        clock.advance(1.0)  # FG-A1 silent for 90 s
        offline = await next_event(events)
        assert (offline.device, offline.kind, offline.gateway_ts) == (
            "FG-A1",
            "terminal_offline",
            T0 + 90.0,
        )
        assert doors.online("FG-A1") is False
        await send(term, "facegate/FG-A1/heartbeat", beat)
        assert await take(events, 1) == [("FG-A1", "", "terminal_online")]
        await send(term, "facegate/FG-A1/heartbeat", beat | {"status": "offline"})  # its will
        assert await take(events, 1) == [("FG-A1", "", "terminal_offline")]
        clock.advance(89.0)  # QR-B2 silent for 90 s
        assert await take(events, 1) == [("QR-B2", "", "terminal_offline")]
        assert events.empty()
    assert (doors.online("FG-A1"), doors.online("QR-B2"), doors.online("nope")) == (
        False,
        False,
        None,
    )


# -- 6. unlock --------------------------------------------------------------------------------


async def test_unlock_publishes_the_terminals_command(tmp_path: Path, mosquitto: Mosquitto) -> None:
    doors = make(mosquitto, tmp_path / "ids.json")
    async with running(doors) as events, terminal(mosquitto) as term:
        await term.subscribe([("facegate/FG-A1/cmd", 1), ("qrpass/v2/QR-B2/commands", 1)])
        await doors.unlock("A1-side", 5, "fire_linkage")
        await doors.unlock("B2-east", 8, "platform command")
        async with asyncio.timeout(10):
            received = [await anext(term.messages) for _ in range(2)]
        fg_cmd, qr_cmd = (json.loads(m.payload) for m in received)
        assert [m.topic.value for m in received] == [
            "facegate/FG-A1/cmd",
            "qrpass/v2/QR-B2/commands",
        ]
        assert all(m.qos == 1 for m in received)
        assert len(fg_cmd.pop("msgId")) == 32
        assert fg_cmd == {
            "cmd": "openDoor",
            "deviceSn": "FG-A1",
            "doorNo": 2,
            "duration": 5,
            "note": "fire_linkage",
            "expire": int(T0) + 10,
        }
        assert qr_cmd["header"]["ts"] == int(T0 * 1000)
        assert qr_cmd["header"]["expires"] == int(T0 * 1000) + 10_000
        assert qr_cmd["body"] == {
            "cmd": "UNLOCK",
            "door": {"id": "B2-east"},
            "duration": 8,
            "note": "platform command",
        }
        # the opening that follows the unlock is no forced entry
        await send(term, FG_EVENTS, fg("DOOR_OPEN", "E-1", doorNo=2))
        assert await take(events, 2) == [
            ("FG-A1", "", "terminal_online"),
            ("FG-A1", "A1-side", "door_opened"),
        ]
        for door, seconds, reason, error in [
            ("nope", 5, "x", "unknown door"),
            ("A1-main", 0, "x", "seconds must be"),
            ("A1-main", 3601, "x", "seconds must be"),
            ("A1-main", 5, "", "reason must be"),
            ("A1-main", 5, "a\nb", "reason must be"),
        ]:
            with pytest.raises(UnlockRefused, match=error):
                await doors.unlock(door, seconds, reason)
        await send(term, "facegate/FG-A1/heartbeat", {"status": "offline"})
        assert await take(events, 1) == [("FG-A1", "", "terminal_offline")]
        with pytest.raises(NotConnected, match="terminal FG-A1 is offline"):
            await doors.unlock("A1-main", 5, "x")
    assert doors.unlocks == 2
    with pytest.raises(NotConnected, match="not connected to the local broker"):
        await doors.unlock("B2-east", 5, "x")


# -- 7. outages -------------------------------------------------------------------------------


async def test_reconnects_after_a_broker_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    doors = make(mosquitto, tmp_path / "ids.json")
    async with running(doors) as events:
        async with terminal(mosquitto) as term:
            await send(term, QR_EVENTS, qr(0, "before"))
        assert [e.event_id for e in [await next_event(events) for _ in range(2)]] == ["", "before"]
        await mosquitto.restart_async()  # persistence off: the broker forgets our session
        await wait_until(lambda: doors.connects >= 2, "resubscribed after the restart")
        async with terminal(mosquitto) as term:
            await send(term, QR_EVENTS, qr(0, "after"))
        assert (await next_event(events)).event_id == "after"
    assert doors.rejected == dict.fromkeys(REASONS, 0)


# -- 8. privacy, end to end -------------------------------------------------------------------


async def test_raw_person_ids_appear_nowhere(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dedup = tmp_path / "door-ids.json"
    doors = make(mosquitto, dedup)
    seen: list[AccessEvent] = []
    async with running(doors) as events, terminal(mosquitto) as term:
        await send(term, FG_EVENTS, face_pass("R-3-1201-02#7"))  # an id that embeds the person
        await send(term, FG_EVENTS, face_pass("E-2", captureUrl="snap/R-3-1201-02.jpg"))
        await send(term, FG_EVENTS, face_pass("E-3", captureUrl="data:image/jpeg;base64,/9j/4AAQ"))
        await send(term, QR_EVENTS, qr(2, "q-1"))
        await send(term, FG_EVENTS, face_pass("E-2"))  # a duplicate
        await send(term, FG_EVENTS, face_pass("E-9", eventType="NEW", personId="R-SECRET-9"))
        await send(term, QR_EVENTS, qr(0, "q-2"))
        seen = [await next_event(events) for _ in range(7)]
    kinds = ["terminal_online", "granted", "granted", "granted", "terminal_online", "denied"]
    assert [e.kind for e in seen] == [*kinds, "granted"]
    assert seen[1].event_id == NAMES.token("R-3-1201-02#7", "event_id")
    assert [e.snapshot_ref for e in seen[1:4]] == ["", "", ""]  # the first ref names the person
    assert doors.snapshots_dropped + stages(doors).private.snapshots_dropped == 3
    assert {e.person for e in seen if e.person} == {NAMES.pseudonym(r) for r in RAW_IDS[:2]}
    for e in seen:
        no_raw_ids(repr(e))
    for record in caplog.records:
        no_raw_ids(record.getMessage() + repr(record.__dict__))
    no_raw_ids(dedup.read_text())
    no_raw_ids(repr(doors.__dict__))
    no_raw_ids(repr(doors.tracker.__dict__))
