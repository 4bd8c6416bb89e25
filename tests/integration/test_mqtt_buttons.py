"""MqttButtons against a real mosquitto: vendor shapes, dedup across restarts, bad input, outages.

Each test runs ``MqttButtons.run()`` in-process as a task (cancelled and awaited at the end),
publishes as a vendor device would (a plain aiomqtt client, QoS 1) and reads what reached
``emit`` (through the pipeline's dedup stage where a test needs it) from a queue. Waits are
event driven: a test that must know a message was *rejected* publishes a good message after
it on the same topic and waits for that one (the broker keeps the order of one publisher's
QoS 1 messages, and the component handles them in order). Only "reconnected" has no event;
``wait_until`` polls that counter every 10 ms.

The pure parts (mapping, dedup memory and file) are tested here too, synchronously, with
hypothesis feeding random bytes and random JSON to ``parse``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.mqtt.buttons import MqttButtons
from drivers.mqtt.mapping import REASONS, Button, Reason, Reject, parse
from gateway.config.mqtt_devices import (
    NAME_RE,
    LocalBrokerConfig,
    MqttButtonConfig,
    resolve_payload,
)
from gateway.core.clock import ManualClock
from gateway.core.devices import DeviceStates
from gateway.core.items import Item
from gateway.core.messages import ContactEvent
from gateway.pipeline.chain import Pipeline
from gateway.pipeline.dedup import Dedup, DedupCache, DedupFile, DedupMemory
from tests.support.fuzz import examples
from tests.support.mosquitto import Mosquitto

T0 = 1_800_000_000.0  # the wall clock of the component under test (a ManualClock)
CLIENT_ID = "cgw-test-local"
_ids = itertools.count()

SOS = {"kind": "mqtt_button", "id": "sos", "topic": "acme/+/event", "device_from_topic": 1}
BUTTONS: list[dict[str, Any]] = [
    SOS | {"profile": "sos-state-json"},
    {
        "kind": "mqtt_button",
        "id": "panel",
        "topic": "bridge/+/alarm",
        "device_from_topic": 1,
        "profile": "data-alarm-json",
    },
    {
        "kind": "mqtt_button",
        "id": "lobby-sos",
        "topic": "lobby/sos",
        "payload": {"state": "s", "active_values": ["on"], "inactive_values": ["off"]},
    },
    {  # room for 10 000-deep nesting to reach the JSON parser
        "kind": "mqtt_button",
        "id": "big",
        "topic": "big/+/event",
        "device_from_topic": 1,
        "max_payload": 65536,
        "profile": "sos-state-json",
    },
]


# -- helpers ----------------------------------------------------------------------------------


def configs(*docs: dict[str, Any]) -> list[MqttButtonConfig]:
    return [MqttButtonConfig.model_validate(d) for d in (docs or BUTTONS)]


def make(
    broker: Mosquitto,
    buttons: list[MqttButtonConfig] | None = None,
    states: DeviceStates | None = None,
) -> MqttButtons:
    cfg = LocalBrokerConfig.model_validate(
        {"host": broker.host, "port": broker.port, "keepalive": 5, "timeout": 5, "reconnect_max": 1}
    )
    return MqttButtons(
        cfg,
        buttons or configs(),
        client_id=CLIENT_ID,
        clock=ManualClock(wall=T0),
        count=None if states is None else states.count,
    )


@contextlib.asynccontextmanager
async def running(
    buttons: MqttButtons, dedup: Dedup | None = None
) -> AsyncIterator[asyncio.Queue[ContactEvent]]:
    """``buttons.run()`` as a task, subscribed before the body; cancelled and awaited after.

    With ``dedup``, events pass that pipeline stage first, as in the gateway; its memory is
    closed (written) after the component stopped.
    """
    events: asyncio.Queue[ContactEvent] = asyncio.Queue()

    def deliver(item: Item) -> Item:
        assert isinstance(item, ContactEvent)
        events.put_nowait(item)
        return item

    emit = Pipeline([deliver] if dedup is None else [dedup, deliver])
    task = asyncio.create_task(buttons.run(emit), name="test:driver:mqtt_buttons")
    ready = asyncio.create_task(buttons.connected.wait(), name="test:ready")
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
        if dedup is not None:
            dedup.memory.close()
        if not task.cancelled() and task.exception() is not None:
            raise AssertionError("the component crashed") from task.exception()


def dedup_stage(path: Path, buttons: list[MqttButtonConfig] | None = None) -> Dedup:
    """The pipeline's dedup stage over the memory in ``path``, as the mqtt kind builds it."""
    windows = {b.id: (b.dedup_window, b.dedup_size) for b in buttons or configs()}
    return Dedup(DedupMemory(path, windows, ManualClock(wall=T0)))


@contextlib.asynccontextmanager
async def device(broker: Mosquitto) -> AsyncIterator[aiomqtt.Client]:
    """A vendor device (or bridge) publishing to the local broker."""
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=f"device-{next(_ids)}", timeout=5
    ) as client:
        yield client


async def send(client: aiomqtt.Client, topic: str, payload: bytes | dict[str, Any]) -> None:
    data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
    await client.publish(topic, data, qos=1)  # returns on the broker's PUBACK


async def next_event(events: asyncio.Queue[ContactEvent]) -> ContactEvent:
    async with asyncio.timeout(10):
        return await events.get()


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll an in-memory counter of the component (it has no event for it)."""
    deadline = time.monotonic() + 15
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after 15 s: {what}")
        await asyncio.sleep(0.01)


def press(event_id: str, state: str = "pressed") -> dict[str, Any]:
    return {"id": event_id, "evt": "sos", "state": state}


# -- 1. vendor shapes -------------------------------------------------------------------------


async def test_both_vendor_shapes_map_to_contact_events(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    buttons = make(mosquitto)
    async with running(buttons) as events, device(mosquitto) as dev:
        await send(dev, "acme/btn-101/event", press("7f3c-1") | {"bat": 87})
        await send(dev, "acme/btn-101/event", press("7f3c-2", "released"))
        await send(dev, "bridge/b3-2-1201/alarm", {"data": {"eventId": 48213, "alarm": 1}})
        await send(dev, "bridge/b3-2-1201/alarm", {"data": {"eventId": 48214, "alarm": False}})
        await send(dev, "lobby/sos", {"s": "on"})
        got = [await next_event(events) for _ in range(5)]
    assert got == [
        ContactEvent("btn-101", "sos", True, T0, "7f3c-1"),
        ContactEvent("btn-101", "sos", False, T0, "7f3c-2"),
        ContactEvent("b3-2-1201", "sos", True, T0, "48213"),
        ContactEvent("b3-2-1201", "sos", False, T0, "48214"),
        ContactEvent("lobby-sos", "button", True, T0, ""),
    ]
    assert buttons.rejected == dict.fromkeys(REASONS, 0)
    assert buttons.delivered == 5


# -- 2. dedup, persisted across a restart -----------------------------------------------------


async def test_a_repeated_event_id_alarms_once_even_across_a_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    dedup = tmp_path / "state" / "dedup.json"
    first, seen = make(mosquitto), dedup_stage(dedup)
    async with running(first, seen) as events, device(mosquitto) as dev:
        await send(dev, "acme/btn-7/event", press("e-1"))
        await send(dev, "acme/btn-7/event", press("e-1"))  # a repeat (QoS 1 redelivery)
        await send(dev, "acme/btn-7/event", press("e-2"))
        assert await next_event(events) == ContactEvent("btn-7", "sos", True, T0, "e-1")
        assert (await next_event(events)).event_id == "e-2"
        assert events.empty()
        assert seen.dropped["duplicate"] == 1
        await send(dev, "acme/btn-8/event", press("e-1"))  # another device's ids are its own
        assert (await next_event(events)).device == "btn-8"
    saved = json.loads(dedup.read_text())
    assert sorted(e[:2] for e in saved["buttons"]["sos"]) == [
        ["btn-7", "e-1"],
        ["btn-7", "e-2"],
        ["btn-8", "e-1"],
    ]

    # While the gateway is down, the broker queues for its persistent session: a replay of
    # e-1 and a new press e-3. A new component on the same dedup file delivers e-3 only.
    async with device(mosquitto) as dev:
        await send(dev, "acme/btn-7/event", press("e-1"))
        await send(dev, "acme/btn-7/event", press("e-3"))
    second, seen = make(mosquitto), dedup_stage(dedup)
    async with running(second, seen) as events:
        assert await next_event(events) == ContactEvent("btn-7", "sos", True, T0, "e-3")
        assert events.empty()
    assert seen.dropped["duplicate"] == 1
    assert second.delivered == 2  # the driver passes both on; the pipeline drops the replay


async def test_a_button_removed_from_the_config_is_counted_not_mapped(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The persistent session keeps a removed button's subscription: its messages are refused."""
    async with running(make(mosquitto)):
        pass
    fewer = make(mosquitto, configs(BUTTONS[0]))
    async with running(fewer) as events, device(mosquitto) as dev:
        await send(dev, "bridge/b1/alarm", {"data": {"eventId": 1, "alarm": 1}})
        await send(dev, "acme/btn-1/event", press("ok"))
        assert (await next_event(events)).event_id == "ok"
    assert fewer.rejected["unknown_topic"] == 1


async def test_listed_devices_are_subscribed_one_by_one_and_others_stay_at_the_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """An entry that lists its devices subscribes their own topics and drops the wildcard an
    earlier config left in the persistent session: a press from an id it does not list never
    reaches the gateway (no ``unknown_device``), a listed one arrives once, not twice."""
    async with running(make(mosquitto, configs(SOS | {"profile": "sos-state-json"}))):
        pass  # the earlier config: "acme/+/event" stays in the session
    listed = configs(SOS | {"profile": "sos-state-json", "devices": ["btn-1", "btn-2"]})
    buttons = make(mosquitto, listed)
    async with running(buttons) as events, device(mosquitto) as dev:
        await send(dev, "acme/intruder/event", press("x-1"))
        await send(dev, "acme/btn-1/event", press("e-1"))
        await send(dev, "acme/btn-2/event", press("e-2"))
        got = [await next_event(events) for _ in range(2)]
        assert buttons.delivered == 2  # a second copy of e-1 would have come before e-2
    assert [(e.device, e.event_id) for e in got] == [("btn-1", "e-1"), ("btn-2", "e-2")]
    assert buttons.rejected == dict.fromkeys(REASONS, 0)


# -- 3. bad input -----------------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes, Reason]] = [
    ("acme/btn-1/event", b"{not json", "not_json"),
    ("acme/btn-1/event", b"\xff\xfe\x00{}", "not_utf8"),
    ("acme/btn-1/event", b'{"id": 1.5, "evt": "sos", "state": "pressed"}', "unmapped"),
    ("acme/btn-1/event", b'{"id": "x", "evt": "sos", "state": ["pressed"]}', "unmapped"),
    ("acme/btn-1/event", b'{"id": "x", "evt": "sos"}', "unmapped"),
    ("acme/btn-1/event", b'{"id": "x", "evt": "sos", "state": "PRESSED"}', "unmapped"),
    ("acme/btn-1/event", b'{"id": "x", "evt": "s o s", "state": "pressed"}', "unmapped"),
    ("acme/btn-1/event", b'{"id": "", "evt": "sos", "state": "pressed"}', "unmapped"),
    ("acme/btn-1/event", b"[1, 2, 3]", "unmapped"),
    ("acme/btn 1/event", b'{"id": "x", "evt": "sos", "state": "pressed"}', "unmapped"),
    ("acme/btn-1/event", b'{"id": "x", "pad": "' + b"A" * 10_000 + b'"}', "too_large"),
    ("big/btn-2/event", b"[" * 10_000 + b"]" * 10_000, "not_json"),
    ("big/btn-2/event", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "not_json"),
    ("big/btn-2/event", b"1" * 5_000, "not_json"),  # past Python's 4300-digit int limit
]


async def test_malformed_payloads_are_counted_and_the_loop_keeps_going(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.mqtt.buttons")
    states = DeviceStates()
    buttons = make(mosquitto, states=states)
    async with running(buttons) as events, device(mosquitto) as dev:
        for topic, payload, _ in MALFORMED:
            await send(dev, topic, payload)
        await send(dev, "acme/btn-1/event", press("good-1"))
        assert await next_event(events) == ContactEvent("btn-1", "sos", True, T0, "good-1")
        assert events.empty()
    expected = dict.fromkeys(REASONS, 0)
    for _, _, reason in MALFORMED:
        expected[reason] += 1
    assert buttons.rejected == expected
    assert buttons.delivered == 1
    # each reject that names its device is counted in that device's state too
    counted = {d: s.counters["rejected"] for d, s in states.snapshot().items()}
    assert sum(counted.values()) == len(MALFORMED) - expected["unknown_topic"]
    assert counted["btn-1"] >= 2

    # logged once per (reason, device), never a whole payload
    logged = [r for r in caplog.records if r.name == "drivers.mqtt.buttons"]
    keys = [(r.__dict__["reason"], r.__dict__["device"]) for r in logged]
    assert len(keys) == len(set(keys))
    assert ("unmapped", "btn-1") in keys
    assert ("too_large", "btn-1") in keys
    assert ("unmapped", "sos") in keys  # the device level was no valid id: named by its button
    assert all(r.levelno == logging.WARNING for r in logged)
    assert max(len(r.getMessage()) for r in logged) < 600
    assert all("A" * 201 not in r.getMessage() for r in logged)


async def test_a_device_over_its_budget_is_cut_off_but_its_presses_get_in(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The clock stands still, so no token comes back: a device has its burst and no more.
    Beyond it repeats and junk are counted ``rate_limited``; a press and its release (changes
    of the contact's state) still get in; another device of the same entry is untouched."""
    sos = configs(SOS | {"profile": "sos-state-json", "rate_limit": {"rate": 1, "burst": 5}})
    buttons = make(mosquitto, sos)
    async with running(buttons) as events, device(mosquitto) as dev:
        for i in range(8):  # "released" over and over, a new id each time
            await send(dev, "acme/noisy/event", press(f"r{i}", "released"))
        await send(dev, "acme/noisy/event", b"{not json")
        await send(dev, "acme/noisy/event", press("p1"))  # a real press, beyond the budget
        await send(dev, "acme/noisy/event", press("p2"))  # the same state again
        await send(dev, "acme/noisy/event", press("r9", "released"))  # its release
        await send(dev, "acme/quiet/event", press("q1"))
        got = [await next_event(events) for _ in range(8)]
        assert events.empty()
    assert [(e.device, e.event_id, e.active) for e in got] == [
        *[("noisy", f"r{i}", False) for i in range(5)],
        ("noisy", "p1", True),
        ("noisy", "r9", False),
        ("quiet", "q1", True),
    ]
    assert buttons.rejected == dict.fromkeys(REASONS, 0) | {"rate_limited": 3 + 1 + 1}
    assert buttons.delivered == 8


# -- 4. outages -------------------------------------------------------------------------------


async def test_reconnects_after_a_broker_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    buttons = make(mosquitto)
    async with running(buttons) as events:
        async with device(mosquitto) as dev:
            await send(dev, "acme/btn-1/event", press("before"))
        assert (await next_event(events)).event_id == "before"
        await mosquitto.restart_async()  # persistence off: the broker forgets our session
        await wait_until(lambda: buttons.connects >= 2, "resubscribed after the restart")
        async with device(mosquitto) as dev:
            await send(dev, "acme/btn-1/event", press("after"))
        assert await next_event(events) == ContactEvent("btn-1", "sos", True, T0, "after")
    assert buttons.rejected == dict.fromkeys(REASONS, 0)


async def test_starts_while_the_broker_is_down(tmp_path: Path, mosquitto: Mosquitto) -> None:
    await mosquitto.stop_async()
    buttons = make(mosquitto)
    events: asyncio.Queue[ContactEvent] = asyncio.Queue()
    task = asyncio.create_task(buttons.run(events.put_nowait), name="test:driver:mqtt_buttons")
    try:
        await mosquitto.start_async()
        async with asyncio.timeout(10):
            await buttons.connected.wait()
        async with device(mosquitto) as dev:
            await send(dev, "lobby/sos", {"s": "off"})
        assert (await next_event(events)).active is False
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- 5. the pure parts ------------------------------------------------------------------------

PARSE_BUTTONS = [Button(b, resolve_payload(b)) for b in configs()]
TOPICS = ["acme/btn-1/event", "bridge/b-1/alarm", "lobby/sos", "big/x/event", "acme/a b/event"]
KEYS = ["id", "evt", "state", "data", "eventId", "alarm", "s"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["pressed", "released", "sos", "on", "off", "", "s o s", "\ud800", 0, 1])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=20,
)


def _often(*good: object) -> st.SearchStrategy[object]:
    """A valid value half of the time, any JSON scalar otherwise."""
    return st.booleans().flatmap(lambda ok: st.sampled_from(good) if ok else scalars)


# the shipped shapes on their own topics, with fuzzed values and optional and extra keys
vendor_messages = st.one_of(
    st.tuples(
        st.sampled_from(["acme/btn-1/event", "big/x/event"]),
        st.fixed_dictionaries(
            {"id": _often("e-1", 7), "evt": _often("sos"), "state": _often("pressed", "normal")},
            optional={"bat": json_values},
        ),
    ),
    st.tuples(
        st.just("bridge/b-1/alarm"),
        st.fixed_dictionaries(
            {"data": st.fixed_dictionaries({"eventId": _often(48213), "alarm": _often(1, False)})}
        ),
    ),
    st.tuples(st.just("lobby/sos"), st.fixed_dictionaries({"s": _often("on", "off")})),
)


def _outcome(topic: str, payload: bytes) -> ContactEvent | Reason:
    try:
        return parse(PARSE_BUTTONS, topic, payload, T0)[1]
    except Reject as rej:
        return rej.reason


def _check(topic: str, payload: bytes) -> None:
    """``parse`` returns a well-formed event or raises ``Reject``; nothing else."""
    event = _outcome(topic, payload)
    if isinstance(event, str):
        assert event in REASONS
        return
    assert NAME_RE.fullmatch(event.device)
    assert NAME_RE.fullmatch(event.input)
    assert len(event.event_id) <= 128
    assert event.event_id.isprintable()
    event.event_id.encode()  # storable as UTF-8


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(TOPICS) | st.text(max_size=30), payload=st.binary(max_size=300))
def test_parse_of_random_bytes_only_rejects(topic: str, payload: bytes) -> None:
    _check(topic, payload)


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.tuples(st.sampled_from(TOPICS), json_values) | vendor_messages)
def test_parse_of_random_json_only_rejects(message: tuple[str, object]) -> None:
    topic, doc = message
    _check(topic, json.dumps(doc).encode())


@pytest.mark.parametrize("depth", [10_000, 30_000])
def test_deep_nesting_is_not_json(depth: int) -> None:
    with pytest.raises(Reject) as info:
        parse(PARSE_BUTTONS, "big/x/event", b"[" * depth + b"]" * depth, T0)
    assert info.value.reason == "not_json"


def test_dedup_cache_window_size_and_clock_steps() -> None:
    cache = DedupCache(window=10.0, size=3)
    k = ("d", "e-1", True)
    cache.add(k, 100.0)
    assert cache.seen(k, 110.0)
    assert not cache.seen(k, 110.5)  # past the window: new again
    cache.add(k, 200.0)
    assert cache.seen(k, 195.0)  # the clock went back a little: still a repeat
    assert not cache.seen(k, 185.0)  # more than a window back: forgotten (alarm side)
    for i in range(5):
        cache.add(("d", f"n-{i}", True), 300.0 + i)
    assert len(cache) == 3
    assert [key[1] for key, _ in cache.entries(304.0)] == ["n-2", "n-3", "n-4"]


def test_dedup_file_round_trip_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "dedup.json"
    file = DedupFile(path)
    assert file.load() == {}
    file.save({"sos": [(("d", "e-1", True), 100.0)], "other": []})
    assert file.load() == {"sos": [(("d", "e-1", True), 100.0)], "other": []}
    assert not path.with_name("dedup.json.tmp").exists()

    path.write_text('{"version": 1, "buttons": {"sos": [["d", "e", true, 1.0], ["bad"], 7]}}')
    assert file.load() == {"sos": [(("d", "e", True), 1.0)]}
    assert file.skipped == 2
    for junk in (b"\xff\x00", b"{", b"[]", b'{"version": 2, "buttons": {}}', b"[" * 50_000):
        path.write_bytes(junk)
        assert DedupFile(path).load() == {}
