"""The alarm engine on a real store: transitions committed with their messages, outputs,
notifications and escalation, acknowledge/reset, and a restart mid-lifecycle."""

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.delivery import Delivery
from gateway.alarms.engine import SAMPLES_WAITING, AlarmEngine
from gateway.alarms.lifecycle import LifecycleError
from gateway.config.alarms import AlarmsConfig
from gateway.core.clock import SystemClock
from gateway.core.contract import Identity, render
from gateway.core.messages import ContactEvent, Lane, Quality, Reading, Sample
from gateway.core.snapshots import ModemState
from gateway.store.outbox import Row, Store
from tests.support.schemas import validate_message

IDENT = Identity("cgw", "s1", "gw1")
CFG: dict[str, Any] = {
    "rules": [
        {"kind": "contact", "id": "sos", "device": "btn-3f", "type": "emergency"},
        {"kind": "contact", "id": "fire", "device": "plc", "input": "fire_relay", "type": "fire"},
        {"kind": "threshold", "id": "pm25", "point": "pm25", "limit": 75, "clear": 60},
    ],
    "ladders": [
        {
            "id": "default",
            "renotify": 0,
            "tiers": [
                {"after": 0, "channels": ["log", "guard"]},
                {"after": 0.3, "channels": ["manager"]},
            ],
        },
    ],
}


class Recorder:
    """A Dispatcher (our own seam) that records what it was asked to send."""

    def __init__(self, ok: Callable[[str], bool] = lambda _: True) -> None:
        self.sent: list[tuple[tuple[str, ...], str]] = []
        self.ok = ok
        self.event = asyncio.Event()

    async def send(
        self, channels: Sequence[str], title: str, body: str, severity: str
    ) -> list[Delivery]:
        self.sent.append((tuple(channels), title))
        self.event.set()
        return [Delivery(c, self.ok(c), "" if self.ok(c) else "HTTP 500") for c in channels]


@asynccontextmanager
async def engine(
    path: Path, dispatcher: Recorder, outputs: list[str | None], **more: Any
) -> AsyncIterator[tuple[AlarmEngine, Store]]:
    store = await Store.open(path, quota=4 * 1024**2, reserve=1024**2, sinks=["mqtt"])
    eng = AlarmEngine(
        AlarmsConfig.model_validate({**CFG, **more}),
        store,
        SystemClock(),
        lambda: True,
        site="s1",
        dispatcher=dispatcher,
        outputs=outputs.append,
    )
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(eng.run())
            await eng.ready.wait()
            yield eng, store
            task.cancel()
    finally:
        await store.close()


async def alarm_messages(store: Store, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
    """Wait for ``n`` alarm-lane rows; validate each against the schema; return them."""
    got: list[Row] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            got += [r for r in await store.fetch("mqtt", 100, lanes=[Lane.ALARM])]
            if len(got) < n:
                await store.wait_for_rows("mqtt")
    out = []
    for row in got:
        topic, payload = render(IDENT, row)
        out.append(validate_message(IDENT.prefix, topic, payload))
    return out


async def test_button_press_raises_notifies_and_sounds_the_siren(tmp_path: Path) -> None:
    rec, outputs = Recorder(), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs) as (eng, store):
        eng.contact(ContactEvent("btn-3f", "b1", True, 1000.0))
        msgs = await alarm_messages(store, 2)
        assert [(m["state"], m["previous"]) for m in msgs] == [
            ("raised", None),
            ("notified", "raised"),
        ]
        first = msgs[0]
        assert (first["kind"], first["severity"], first["latched"]) == ("contact", "critical", True)
        assert first["message"] == "emergency input b1 pressed"
        assert outputs == ["critical"]
        assert rec.sent[0] == (("guard",), "[CRITICAL] emergency input b1 pressed - btn-3f")
        # nobody acknowledges: the next rung goes out at 0.3 s
        async with asyncio.timeout(5):
            while len(rec.sent) < 2:
                rec.event.clear()
                await rec.event.wait()
        assert rec.sent[1][0] == ("manager",)
        (alarm,) = eng.open_alarms()
        await eng.acknowledge(alarm.id, "guard-wang")
        acked = (await alarm_messages(store, 1))[0]
        assert acked["state"] == "acknowledged"
        assert acked["acked_by"] == "guard-wang"
        assert acked["time_to_ack_s"] >= 0
        assert outputs == ["critical", None]  # acknowledging silences the siren
        with pytest.raises(LifecycleError, match="still active"):
            await eng.reset(alarm.id, "guard-wang")
        eng.contact(ContactEvent("btn-3f", "b1", False, 1010.0))
        released = (await alarm_messages(store, 1))[0]
        assert (released["state"], released["active"]) == ("acknowledged", False)
        await eng.reset(alarm.id, "guard-wang")
        cleared = (await alarm_messages(store, 1))[0]
        assert cleared["state"] == "cleared"
        assert eng.open_alarms() == []


async def test_failed_channels_leave_the_alarm_raised_and_keep_escalating(tmp_path: Path) -> None:
    rec, outputs = Recorder(ok=lambda c: False), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs) as (eng, store):
        eng.contact(ContactEvent("plc", "fire_relay", True, 1000.0))
        msgs = await alarm_messages(store, 2)  # raised; "log" counts as delivered
        assert [m["state"] for m in msgs] == ["raised", "notified"]
        (alarm,) = eng.open_alarms()
        notes = [h[2] for h in alarm.history if h[1] == "notify"]
        assert "guard: failed: HTTP 500" in notes
        assert "log: ok" in notes


async def test_open_alarm_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    rec, outputs = Recorder(), list[str | None]()
    async with engine(path, rec, outputs) as (eng, store):
        eng.contact(ContactEvent("btn-3f", "b1", True, 1000.0))
        await alarm_messages(store, 2)
        (before,) = eng.open_alarms()
    outputs.clear()
    async with engine(path, Recorder(), outputs) as (eng, store):
        (after,) = eng.open_alarms()
        assert (after.id, after.state.value, after.latched) == (before.id, "notified", True)
        assert outputs == ["critical"]  # the siren comes back on with the restored alarm
        # the same button again is a repeat on the restored alarm, not a second alarm
        eng.contact(ContactEvent("btn-3f", "b1", False, 1001.0))
        eng.contact(ContactEvent("btn-3f", "b1", True, 1002.0))
        msgs = await alarm_messages(store, 4)
        # the first run's two messages were never confirmed by a sink: they come again, first
        assert [m["state"] for m in msgs[:2]] == ["raised", "notified"]
        assert {m["alarm_id"] for m in msgs} == {before.id}
        assert (msgs[2]["active"], msgs[3]["active"], msgs[3]["repeats"]) == (False, True, 1)


async def test_threshold_and_modbus_contact_from_samples(tmp_path: Path) -> None:
    rec, outputs = Recorder(), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs) as (eng, store):
        eng.sample(Sample("pm-1", 1000.0, (Reading("pm25", 80, "ug/m3", Quality.GOOD),)))
        eng.sample(Sample("plc", 1000.0, (Reading("fire_relay", True, "", Quality.GOOD),)))
        msgs = await alarm_messages(store, 4)
        raised = {m["rule"]: m for m in msgs if m["state"] == "raised"}
        assert set(raised) == {"pm25", "fire"}
        assert raised["pm25"]["value"] == 80
        assert raised["fire"]["message"] == "fire input fire_relay pressed"
        eng.sample(Sample("pm-1", 1001.0, (Reading("pm25", 50, "ug/m3", Quality.GOOD),)))
        cleared = await alarm_messages(store, 1)
        assert (cleared[0]["rule"], cleared[0]["state"]) == ("pm25", "cleared")
        assert json.loads(json.dumps(cleared[0]))["time_to_ack_s"] is None


async def test_a_burst_of_alarms_is_committed_together_not_one_fsync_each(tmp_path: Path) -> None:
    """Thirty inputs arriving while the store is busy: two transactions, not thirty."""
    rec, outputs = Recorder(), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs) as (eng, store):
        commits: list[int] = []  # alarm records per transaction the engine asked for
        asked = asyncio.Event()
        transact = store.transact

        async def counted(work: Any, records: Sequence[Any] = ()) -> Any:
            commits.append(len(records))
            asked.set()
            return await transact(work, records)

        store.transact = counted  # type: ignore[method-assign]
        gate = threading.Event()

        def slow_fsync(_conn: Any) -> bool:
            return gate.wait(10)

        busy = asyncio.create_task(transact(slow_fsync))
        commits.append(0)
        await asyncio.sleep(0)
        eng.contact(ContactEvent("btn-3f", "b0", True, 1000.0))
        async with asyncio.timeout(5):
            while len(commits) < 2:  # the blocker, then the first alarm's commit waiting
                asked.clear()
                await asked.wait()
        for n in range(1, 30):  # the rest of the burst arrives while that commit waits
            eng.contact(ContactEvent("btn-3f", f"b{n}", True, 1000.0 + n))
        gate.set()
        await busy
        raised = [m for m in await alarm_messages(store, 60) if m["state"] == "raised"]
        assert sorted(m["message"] for m in raised) == sorted(
            f"emergency input b{n} pressed" for n in range(30)
        )
        # the blocker, the first alarm, then the 29 waiting ones in one transaction (each
        # "notified" transition comes later from its own delivery task)
        assert commits[:2] == [0, 1]
        assert 29 in commits


async def test_chinese_staff_get_the_alarm_in_chinese(tmp_path: Path) -> None:
    rec, outputs = Recorder(), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs, language="zh-CN") as (eng, store):
        eng.contact(ContactEvent("plc", "fire_relay", True, 1000.0))
        msgs = await alarm_messages(store, 2)
        assert msgs[0]["message"] == "fire input fire_relay pressed"  # the platform: English
        assert rec.sent[0] == (("guard",), "【紧急】火警：输入 fire_relay 已触发 - plc")


async def test_a_dead_staff_channel_raises_channel_down_on_the_other_channels(
    tmp_path: Path,
) -> None:
    rec, outputs = Recorder(ok=lambda channel: channel != "guard"), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs) as (eng, store):
        for n in range(3):  # three alarms the guard's channel fails to deliver
            eng.contact(ContactEvent("btn-3f", f"b{n}", True, 1000.0 + n))
        raised: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not any(m["rule"] == "channel_down" for m in raised):
                raised += [m for m in await alarm_messages(store, 1) if m["state"] == "raised"]
        (down,) = [m for m in raised if m["rule"] == "channel_down"]
        assert (down["device"], down["severity"]) == ("guard", "warning")
        assert down["message"].startswith("staff channel guard is down: 3 messages in a row")
        # the ladder's next rung (the manager) hears that the guard's channel is dead
        async with asyncio.timeout(10):
            while not any(
                ch == ("manager",) and "staff channel guard is down" in title
                for ch, title in rec.sent
            ):
                rec.event.clear()
                await rec.event.wait()
        state = eng.snapshot().channels["guard"]
        # three alarms, then the channel_down alarm's own first rung: all failed on the guard
        assert (state.delivered, state.failed, state.down) == (0, 4, True)
        assert eng.snapshot().channels["manager"].delivered >= 1


async def test_everyone_notified_hears_when_someone_acknowledges_and_when_it_clears(
    tmp_path: Path,
) -> None:
    rec, outputs = Recorder(), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs) as (eng, _store):
        eng.contact(ContactEvent("btn-3f", "b1", True, 1000.0))
        async with asyncio.timeout(5):  # the guard, then (0.3 s on) the manager
            while len(rec.sent) < 2:
                rec.event.clear()
                await rec.event.wait()
        (alarm,) = eng.open_alarms()
        await eng.acknowledge(alarm.id, "guard-wang")
        changed = asyncio.Event()
        eng.listeners.append(changed.set)  # told after every committed change
        eng.contact(ContactEvent("btn-3f", "b1", False, 1010.0))
        async with asyncio.timeout(5):
            while eng.open_alarms()[0].active:
                changed.clear()
                await changed.wait()
        await eng.reset(alarm.id, "guard-wang")
        title = "emergency input b1 pressed - btn-3f"
        wanted = [
            (("guard", "manager"), f"[INFO] acknowledged by guard-wang: {title}"),
            (("guard", "manager"), f"[INFO] cleared: {title}"),
        ]
        async with asyncio.timeout(5):
            while rec.sent[2:] != wanted:
                rec.event.clear()
                await rec.event.wait()


async def test_a_flood_of_readings_is_bounded_and_never_crowds_out_a_contact(
    tmp_path: Path,
) -> None:
    rec, outputs = Recorder(), list[str | None]()
    async with engine(tmp_path / "b.db", rec, outputs) as (eng, store):
        reading = Sample("pm-1", 1000.0, (Reading("pm25", 10.0, "ug/m3", Quality.GOOD),))
        flood = SAMPLES_WAITING + 500
        for _ in range(flood):  # all at once: the engine takes none before the last
            eng.sample(reading)
        eng.contact(ContactEvent("btn-3f", "b1", True, 1000.0))  # after the flood, still in
        relay = Sample("plc", 1000.0, (Reading("fire_relay", True, "", Quality.GOOD),))
        eng.sample(relay)  # a Modbus discrete input is a contact: never refused either
        assert eng.samples_dropped == flood - SAMPLES_WAITING
        assert eng.snapshot().samples_dropped == 500
        raised = [m for m in await alarm_messages(store, 4) if m["state"] == "raised"]
        assert sorted(m["rule"] for m in raised) == ["fire", "sos"]


async def test_an_acknowledgement_while_the_engine_restarts_still_works(tmp_path: Path) -> None:
    """A reload stops ``run``; a guard acknowledging then must not hit its finished tasks."""
    store = await Store.open(tmp_path / "b.db", quota=4 * 1024**2, reserve=1024**2, sinks=["mqtt"])
    rec = Recorder()
    eng = AlarmEngine(
        AlarmsConfig.model_validate(CFG), store, SystemClock(), lambda: True, site="s1",
        dispatcher=rec,
    )  # fmt: skip
    try:
        task = asyncio.create_task(eng.run())
        await eng.ready.wait()
        eng.contact(ContactEvent("btn-3f", "b1", True, 1000.0))
        async with asyncio.timeout(5):
            while not rec.sent:
                rec.event.clear()
                await rec.event.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        (alarm,) = eng.open_alarms()
        (acked,) = await eng.acknowledge(alarm.id, "guard-wang")
        assert acked.alarm.acked_by == "guard-wang"
    finally:
        await store.close()


async def test_settled_returns_once_what_an_earlier_input_raised_is_committed(
    tmp_path: Path,
) -> None:
    async with engine(tmp_path / "b.db", Recorder(), []) as (eng, store):
        await eng.settled()  # nothing queued: at once
        eng.contact(ContactEvent("btn-3f", "b1", True, 1000.0))
        assert eng.open_alarms() == []  # queued, not handled yet
        await eng.settled()
        rows = await store.fetch("mqtt", 10, lanes=[Lane.ALARM])
        assert rows[0].fields["state"] == "raised"  # on disk: a crash now keeps it
        assert [a.device for a in eng.open_alarms()] == ["btn-3f"]


async def test_a_fallback_channel_goes_only_when_the_internet_channels_fail(
    tmp_path: Path,
) -> None:
    internet_up = True
    rec, outputs = Recorder(ok=lambda ch: ch != "guard" or internet_up), list[str | None]()
    ladder = {"id": "default", "tiers": [{"after": 0, "channels": ["guard", "guard-sms"]}]}
    async with engine(tmp_path / "f.db", rec, outputs, ladders=[ladder]) as (eng, _):
        eng.fallback = frozenset({"guard-sms"})  # as ``reconfigure`` sets it from the channels
        eng.contact(ContactEvent("btn-3f", "b1", True, 1000.0))
        async with asyncio.timeout(5):
            while not rec.sent:
                rec.event.clear()
                await rec.event.wait()
        assert rec.sent == [(("guard",), rec.sent[0][1])]  # the WeCom group got it: no SMS
        internet_up = False
        eng.contact(ContactEvent("btn-3f", "b1", False, 1001.0))
        eng.contact(ContactEvent("btn-3f", "b2", True, 1002.0))
        async with asyncio.timeout(5):
            while ("guard-sms",) not in [ch for ch, _ in rec.sent]:
                rec.event.clear()
                await rec.event.wait()
        assert [ch for ch, _ in rec.sent][-2:] == [("guard",), ("guard-sms",)]  # after it failed


async def test_a_lost_modem_raises_channel_down(tmp_path: Path) -> None:
    rec, outputs = Recorder(), list[str | None]()
    async with engine(tmp_path / "m.db", rec, outputs) as (eng, store):
        eng.modem("guard-sms", ModemState("/dev/ttyUSB2", problem="cannot open the modem"))
        down = (await alarm_messages(store, 1))[0]  # "notified" may come in the same batch
        assert (down["rule"], down["device"], down["state"]) == (
            "channel_down",
            "guard-sms",
            "raised",
        )
        assert eng.snapshot().channels["guard-sms"].down
