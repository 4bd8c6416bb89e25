"""Fire linkage: escape routes released while a fire alarm is open, and audited."""

import asyncio

from gateway.alarms.linkage import FireLinkage
from gateway.core.clock import SystemClock
from gateway.core.errors import TransientError
from gateway.core.messages import Record


async def test_escape_routes_are_held_released_until_the_fire_alarm_is_reset() -> None:
    fires: list[str] = []
    sent: list[tuple[str, int]] = []
    records: list[Record] = []
    unlocked = asyncio.Event()
    broken = {"stair-b"}

    async def unlock(door: str, seconds: int, why: str) -> None:
        if door in broken:
            raise TransientError("terminal offline")
        sent.append((door, seconds))
        unlocked.set()

    linkage = FireLinkage(
        ["stair-a", "stair-b"],
        unlock,
        lambda: list(fires),
        records.append,
        SystemClock(),
        lambda: True,
        hold=2,
        repeat=0.05,
    )
    task = asyncio.create_task(linkage.run())
    try:
        await asyncio.sleep(0)  # no fire: nothing is sent
        assert not linkage.holds("stair-a")
        fires.append("a1")
        linkage.wake()
        await asyncio.wait_for(unlocked.wait(), 5)
        assert linkage.holds("stair-a")
        assert not linkage.holds("lobby")
        broken.clear()  # the second terminal comes back: it is released on the next round
        async with asyncio.timeout(5):
            while ("stair-b", 2) not in sent:
                unlocked.clear()
                await unlocked.wait()
        n = len(sent)
        async with asyncio.timeout(5):  # repeated while the alarm stays open
            while len(sent) < n + 2:
                unlocked.clear()
                await unlocked.wait()
        fires.clear()
        linkage.wake()
        async with asyncio.timeout(5):
            while linkage.active:  # noqa: ASYNC110 - the linkage has no event for "restored"
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not linkage.holds("stair-a")
    audits = [dict(r.fields) for r in records]
    assert [a["outcome"] for a in audits] == ["released", "restored"]
    assert audits[0]["doors"] == ["stair-a", "stair-b"]
