"""The dispatcher: every order routed to its actuator or the alarm engine, and audited."""

import asyncio
from typing import Any

import pytest

from gateway.alarms.lifecycle import LifecycleError
from gateway.commands.dispatch import QUEUE_MAX, Dispatcher, OrderFailed
from gateway.core.clock import SystemClock
from gateway.core.command import Acknowledge, Order, Reset, Silence, SoundSiren, UnlockDoor
from gateway.core.errors import TransientError
from gateway.core.messages import Record


class Engine:
    """The alarm engine's operator side, recorded."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.ready.set()
        self.calls: list[tuple[str, str | None, str]] = []

    async def acknowledge(self, alarm_id: str, by: str) -> list[Any]:
        if alarm_id == "gone":
            raise LifecycleError("no open alarm 'gone'")
        self.calls.append(("ack", alarm_id, by))
        return ["transition"]

    async def reset(self, alarm_id: str, by: str) -> list[Any]:
        self.calls.append(("reset", alarm_id, by))
        return []

    async def acknowledge_all(self, by: str) -> int:
        self.calls.append(("ack", None, by))
        return 2

    async def reset_all(self, by: str) -> int:
        self.calls.append(("reset", None, by))
        return 0

    def silence(self) -> int:
        self.calls.append(("silence", None, ""))
        return 3


class Door:
    """An actuator for one door; ``broken`` makes it fail like an offline terminal."""

    def __init__(self, door: str) -> None:
        self.door = door
        self.applied: list[Order] = []
        self.broken = False

    def accepts(self, order: Order) -> bool:
        return isinstance(order, UnlockDoor) and order.door == self.door

    async def apply(self, order: Order) -> None:
        if self.broken:
            raise TransientError(f"terminal of {self.door} is offline")
        self.applied.append(order)


class Siren:
    def __init__(self) -> None:
        self.applied: list[Order] = []

    def accepts(self, order: Order) -> bool:
        return isinstance(order, SoundSiren)

    async def apply(self, order: Order) -> None:
        self.applied.append(order)


class Harness:
    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine
        self.records: list[Record] = []
        self.dispatcher = Dispatcher(
            lambda: self.engine, self.records.append, SystemClock(), lambda: True
        )

    def audits(self) -> list[dict[str, Any]]:
        return [dict(r.fields) for r in self.records if r.topic == "audit"]


async def test_alarm_orders_go_to_the_engine_and_are_audited_upstream() -> None:
    h = Harness(Engine())
    assert await h.dispatcher.execute(Acknowledge("a1", "platform:li")) == {
        "alarm_id": "a1",
        "changed": True,
    }
    assert await h.dispatcher.execute(Reset(None, "gpio-1/reset")) == {"alarms": 0}
    assert await h.dispatcher.execute(Silence("platform")) == {"silenced": 3}
    assert h.engine is not None
    assert h.engine.calls == [
        ("ack", "a1", "platform:li"),
        ("reset", None, "gpio-1/reset"),
        ("silence", None, ""),
    ]
    audits = h.audits()
    assert [(a["name"], a["outcome"], a["authenticated"]) for a in audits] == [
        ("ack", "executed", False),
        ("reset", "executed", False),
        ("silence", "executed", False),
    ]
    assert audits[1]["detail"].startswith("gpio-1/reset: ")


async def test_a_refused_order_fails_with_its_reason_and_is_audited_as_failed() -> None:
    h = Harness(Engine())
    with pytest.raises(OrderFailed, match="no open alarm"):
        await h.dispatcher.execute(Acknowledge("gone", "platform:li"))
    with pytest.raises(OrderFailed, match="no configured door 'gate'"):
        await h.dispatcher.execute(UnlockDoor("gate", 5, "visitor", "platform"))
    assert [a["outcome"] for a in h.audits()] == ["failed", "failed"]
    assert (h.dispatcher.executed, h.dispatcher.failed) == (0, 2)


async def test_alarm_orders_wait_for_the_engine() -> None:
    h = Harness(None)
    with pytest.raises(OrderFailed, match="starting"):
        await h.dispatcher.execute(Silence("platform"))
    h.engine = Engine()
    h.engine.ready.clear()
    with pytest.raises(OrderFailed, match="starting"):
        await h.dispatcher.execute(Silence("platform"))


async def test_unlocks_reach_the_door_that_accepts_them_until_it_is_detached() -> None:
    h = Harness()
    gate, lobby = Door("gate"), Door("lobby")
    await h.dispatcher.attach(gate)
    detach = await h.dispatcher.attach(lobby)
    order = UnlockDoor("lobby", 5, "visitor", "linkage")
    assert await h.dispatcher.execute(order, audited=True) == {"door": "lobby", "seconds": 5}
    assert (gate.applied, lobby.applied) == ([], [order])
    assert h.audits() == []  # audited by its source: logged only
    lobby.broken = True
    with pytest.raises(OrderFailed, match="offline"):
        await h.dispatcher.execute(order)
    detach()
    with pytest.raises(OrderFailed, match="no configured door"):
        await h.dispatcher.execute(order)


async def test_submitted_orders_run_in_order_and_a_late_siren_resumes_the_pattern() -> None:
    h = Harness(Engine())
    early = Siren()
    await h.dispatcher.attach(early)
    runner = asyncio.create_task(h.dispatcher.run())
    try:
        h.dispatcher.submit(SoundSiren("critical"))
        h.dispatcher.submit(Acknowledge(None, "gpio-1/ack"))
        async with asyncio.timeout(5):
            while h.engine is not None and not h.engine.calls:  # noqa: ASYNC110 - no event
                await asyncio.sleep(0)
        late = Siren()
        await h.dispatcher.attach(late)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert [o.severity for o in early.applied if isinstance(o, SoundSiren)] == [None, "critical"]
    assert [o.severity for o in late.applied if isinstance(o, SoundSiren)] == ["critical"]
    assert [a["name"] for a in h.audits()] == ["ack"]  # the siren mirrors alarm records


def test_a_full_queue_drops_and_counts() -> None:
    h = Harness()
    for _ in range(QUEUE_MAX + 3):
        h.dispatcher.submit(Silence("gpio-1/ack"))
    assert h.dispatcher.dropped == 3
