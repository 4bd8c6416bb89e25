"""The sink's in-flight window keeps room for alarms while telemetry drains."""

import asyncio

from gateway.core.messages import Lane
from gateway.sinks.window import Window


def never(_: Lane) -> bool:
    return False


async def test_telemetry_cannot_take_the_slots_alarms_need() -> None:
    window = Window(size=5, telemetry=2)
    assert await window.acquire(Lane.TELEMETRY, never)
    assert await window.acquire(Lane.TELEMETRY, never)
    third = asyncio.create_task(window.acquire(Lane.TELEMETRY, never))
    await asyncio.sleep(0)
    assert not third.done()  # telemetry is at its share
    for _ in range(3):  # alarms and events still find slots at once
        async with asyncio.timeout(1):
            assert await window.acquire(Lane.ALARM, never)
    window.release(Lane.TELEMETRY)
    async with asyncio.timeout(1):
        assert await third
    window.release(Lane.ALARM)


async def test_a_telemetry_row_waiting_for_a_slot_yields_to_an_alarm() -> None:
    window = Window(size=4, telemetry=1)
    assert await window.acquire(Lane.TELEMETRY, never)
    urgent = False
    waiting = asyncio.create_task(window.acquire(Lane.TELEMETRY, lambda _: urgent))
    await asyncio.sleep(0)
    urgent = True  # an alarm was committed while the row waited
    window.release(Lane.TELEMETRY)
    async with asyncio.timeout(1):
        assert await waiting is False  # it gives its turn back instead of taking the slot
    assert await window.acquire(Lane.TELEMETRY, never)  # and left the slot free


async def test_a_telemetry_row_yields_to_an_alarm_while_no_pubacks_come() -> None:
    # F07: PUBACKs stall, so no telemetry slot is ever freed; the alarm's commit alone must
    # give the waiting row's turn back (before: it waited for the next telemetry PUBACK)
    window = Window(size=4, telemetry=1)
    assert await window.acquire(Lane.TELEMETRY, never)
    commits: list[asyncio.Future[None]] = []
    urgent = False

    def changed() -> asyncio.Future[None]:
        commits.append(asyncio.get_running_loop().create_future())
        return commits[-1]

    waiting = asyncio.create_task(window.acquire(Lane.TELEMETRY, lambda _: urgent, changed))
    await asyncio.sleep(0)
    assert not waiting.done()
    urgent = True  # an alarm is committed; no PUBACK comes
    commits[-1].set_result(None)
    async with asyncio.timeout(1):
        assert await waiting is False
    async with asyncio.timeout(1):
        assert await window.acquire(Lane.ALARM, never)
