"""A simulated week of welfare checks on a fake clock, through the real alarm engine and store.

Three households, each watched with a 24 h quiet window:

- ``a-101``: its resident (by pseudonym) passes the door every morning at 08:00 and stops
  after Tuesday; a neighbour keeps using the same door at noon. Exactly one welfare check,
  raised on Wednesday at 08:00; the guard answers it at 09:00 and enters a hospital stay.
- ``b-202``: presses its "I am fine" button every day at 10:00 but is away Wednesday to
  Friday on a planned absence: no check.
- ``c-303``: uses its door at 09:00 and 18:00, but its terminal is offline from Wednesday
  20:00 to Thursday 20:00, so Thursday's visits are never seen: no check from that day.

Then a gateway outage of more than a day: never mistaken for a quiet household; and a planned
absence sent by the platform as a signed command's action.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.alarms.engine import AlarmEngine
from gateway.commands.actions import GatewayActions
from gateway.commands.dispatch import Dispatcher
from gateway.commands.service import ActionFailed
from gateway.config.alarms import AlarmsConfig
from gateway.config.welfare import WelfareConfig
from gateway.core.access import AccessEvent, Kind
from gateway.core.clock import ManualClock
from gateway.core.items import Item
from gateway.core.messages import ContactEvent
from gateway.reports.history import DeviceInfo
from gateway.reports.recorder import Recorder
from gateway.store import Store
from gateway.welfare.monitor import Parts, WelfareMonitor

ZONE = "Asia/Shanghai"
TZ = ZoneInfo(ZONE)
RESIDENT = "p1:ab12:" + "0" * 31 + "1"
NEIGHBOUR = "p1:ab12:" + "0" * 31 + "2"
TERMINALS = {"a-door": "term-a", "c-door": "term-c"}
WELFARE: dict[str, Any] = {
    "check_every": 600,
    "households": [
        {"id": "a-101", "person": RESIDENT, "signs": [{"kind": "door", "door": "a-door"}]},
        {"id": "b-202", "signs": [{"kind": "button", "device": "btn-b", "inputs": ["fine"]}]},
        {"id": "c-303", "signs": [{"kind": "door", "door": "c-door"}]},
    ],
}
STEP = 600.0  # seconds between two looks
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def at(day: str, hour: int, minute: int = 0) -> float:
    """Wall time of a weekday of the week of Monday 2026-12-07, local time."""
    return datetime(2026, 12, 7 + DAYS.index(day), hour, minute, tzinfo=TZ).timestamp()


def local(ts: float) -> str:
    return datetime.fromtimestamp(ts, TZ).strftime("%a %H:%M")


def door(terminal: str, door_id: str, ts: float, person: str = "") -> AccessEvent:
    return AccessEvent.build(terminal, door_id, "granted", ts, skew_limit=30, retention=86400,
                             credential="face" if person else "qr", person=person)  # fmt: skip


def terminal(terminal_id: str, online: bool, ts: float) -> AccessEvent:
    kind: Kind = "terminal_online" if online else "terminal_offline"
    return AccessEvent.build(terminal_id, "", kind, ts, skew_limit=30, retention=86400)


@dataclass
class Gateway:
    """The parts of one gateway a welfare check goes through, on one fake clock."""

    clock: ManualClock
    store: Store
    recorder: Recorder
    engine: AlarmEngine
    monitor: WelfareMonitor
    task: asyncio.Task[None]

    async def step(self, to: float, items: Sequence[Item] = ()) -> None:
        """Move the clock to ``to``, hand over what happened then, and take one look."""
        self.clock.advance(to - self.clock.wall())
        for item in items:
            self.monitor.item(item)
        await self.monitor.check()
        await self.engine.settled()
        await self.recorder.flush(self.store)  # the recorder's heartbeat: alive until now

    async def run_until(self, end: float) -> None:
        """Look every ten minutes until ``end``, with nothing happening."""
        while self.clock.wall() + STEP <= end:
            await self.step(self.clock.wall() + STEP)

    async def alarms(self) -> list[dict[str, Any]]:
        """Every alarm in the store, oldest first."""
        rows = await self.store.transact(
            lambda c: [r[0] for r in c.execute("SELECT body FROM alarms ORDER BY raised_at")]
        )
        return [json.loads(r) for r in rows]

    async def die(self) -> None:
        """Stop without a word (no final save): as a power cut would."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.store.close()


@pytest.fixture
async def open_gateway(tmp_path: Path) -> AsyncIterator[Callable[[ManualClock], Any]]:
    """Opens a gateway on the store file of the test; the last one is stopped at the end."""
    opened: list[Gateway] = []

    async def start(clock: ManualClock) -> Gateway:
        store = await Store.open(
            tmp_path / "buf.db", quota=1 << 24, reserve=1 << 20, sinks=["mqtt"]
        )
        recorder = Recorder(clock, ZONE)
        await recorder.begin(store, [DeviceInfo("term-c", "door_terminal", None, None)])
        engine = AlarmEngine(AlarmsConfig(timezone=ZONE), store, clock, lambda: True, site="s1")
        task = asyncio.create_task(engine.run(), name="engine")
        await engine.ready.wait()
        parts = Parts(engine, store, clock, recorder.begun)
        monitor = WelfareMonitor(WelfareConfig.model_validate(WELFARE), ZONE, TERMINALS, parts)
        await monitor.restore()
        gw = Gateway(clock, store, recorder, engine, monitor, task)
        opened.append(gw)
        return gw

    yield start
    if opened and not opened[-1].task.done():
        await opened[-1].die()


async def test_a_week_raises_exactly_one_welfare_check_at_the_right_time(
    open_gateway: Callable[[ManualClock], Any],
) -> None:
    clock = ManualClock(wall=at("Mon", 0))
    gw: Gateway = await open_gateway(clock)
    t = at("Mon", 0)
    while t < at("Sun", 0) + 86400:
        t += 600
        hour, minute = datetime.fromtimestamp(t, TZ).hour, datetime.fromtimestamp(t, TZ).minute
        day = DAYS[datetime.fromtimestamp(t, TZ).weekday()]
        items: list[Item] = []
        if (hour, minute) == (8, 0) and day in ("Mon", "Tue"):
            items.append(door("term-a", "a-door", t, RESIDENT))
        if (hour, minute) == (12, 0):
            items.append(door("term-a", "a-door", t, NEIGHBOUR))  # not the watched resident
        if (hour, minute) == (10, 0) and day not in ("Wed", "Thu", "Fri"):
            items.append(ContactEvent("btn-b", "fine", True, t))
        c_offline = at("Wed", 20) <= t < at("Thu", 20)
        if (hour, minute) in ((9, 0), (18, 0)) and not c_offline:
            items.append(door("term-c", "c-door", t))
        if t == at("Wed", 20):
            items.append(terminal("term-c", False, t))
        if t == at("Thu", 20):
            items.append(terminal("term-c", True, t))
        await gw.step(t, items)
        if t == at("Mon", 12):  # the family tells the office: away Wednesday to Friday
            await gw.monitor.plan_absence("b-202", at("Wed", 0), at("Sat", 0), "family", "office")
        if t == at("Wed", 9):  # the guard went round: the resident is unwell, taken to hospital
            assert gw.monitor.snapshot().quiet == 1
            assert await gw.monitor.answer("a-101", "guard-wang", "visited: taken to hospital")
            await gw.engine.settled()
        if t == at("Wed", 9, 30):
            await gw.monitor.plan_absence("a-101", t, at("Sun", 0) + 7 * 86400, "hospital", "guard")

    alarms = await gw.alarms()
    assert [(a["device"], a["kind"], local(a["raised_at"]), a["state"]) for a in alarms] == [
        ("a-101", "welfare_check", "Wed 08:00", "cleared")
    ]
    (a,) = alarms
    assert a["message"].startswith(
        "no sign of life for 24.0 h (limit 24 h); last sign: door a-door"
    )
    assert a["acked_by"] == "guard-wang"
    assert local(a["cleared_at"]) == "Wed 09:00"
    assert a["history"][-1][2] == "cleared: answered by guard-wang: visited: taken to hospital"
    assert a["facts"]["last_ts"] == repr(at("Tue", 8))
    snap = gw.monitor.snapshot()
    assert (snap.watched, snap.quiet, snap.absent, snap.paused) == (3, 0, 1, 0)


async def test_a_gateway_outage_is_not_counted_as_quiet(
    open_gateway: Callable[[ManualClock], Any],
) -> None:
    clock = ManualClock(wall=at("Mon", 0))
    first: Gateway = await open_gateway(clock)
    await first.step(at("Mon", 8), [door("term-c", "c-door", at("Mon", 8))])
    await first.run_until(at("Mon", 9))  # one hour counted and saved; then the power goes
    await first.die()

    clock.advance(at("Tue", 18) - clock.wall())  # down for 33 hours
    second: Gateway = await open_gateway(clock)  # its recorder records the outage at the start
    await second.run_until(at("Tue", 23))
    assert second.monitor.watch.households["c-303"].counted == pytest.approx(6 * 3600)
    await second.run_until(at("Wed", 16, 50))
    assert [a for a in await second.alarms() if a["device"] == "c-303"] == []
    await second.run_until(at("Wed", 17))
    (alarm,) = [a for a in await second.alarms() if a["device"] == "c-303"]
    assert local(alarm["raised_at"]) == "Wed 17:00"  # Mon 08:00 + 24 h + the 33 h outage


async def test_a_signed_platform_command_enters_a_planned_absence(
    open_gateway: Callable[[ManualClock], Any],
) -> None:
    clock = ManualClock(wall=at("Mon", 0))
    gw: Gateway = await open_gateway(clock)
    orders = Dispatcher(lambda: gw.engine, gw.store.add, clock, lambda: True)

    def actions(monitor: WelfareMonitor | None) -> GatewayActions:
        return GatewayActions(orders, lambda: None, lambda: (200, {}), lambda: monitor)

    start, end = at("Mon", 12), at("Wed", 0)
    result = await actions(gw.monitor).away("b-202", start, end, "family", "platform:office")
    assert result == {"absence": 1, "household": "b-202", "start": start, "end": end}
    await gw.step(at("Mon", 12))
    assert gw.monitor.snapshot().absent == 1
    with pytest.raises(ActionFailed, match="no watched household 'z-999'"):
        await actions(gw.monitor).away("z-999", start, end, "family", "platform:office")
    with pytest.raises(ActionFailed, match="not configured"):
        await actions(None).away("b-202", start, end, "family", "platform:office")
