"""Components restart only when their config changed, and stop stage by stage."""

import asyncio
import contextlib

import pytest

from gateway.runtime.components import STAGE_GRACE_MIN, Component, Components


class Log:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.running: set[str] = set()
        self.started: dict[str, asyncio.Event] = {}

    def comp(self, name: str, key: str, stage: int = 0) -> Component:
        started = self.started.setdefault(f"{name}@{key}", asyncio.Event())

        async def run() -> None:
            assert name not in self.running, f"{name} runs twice"
            self.running.add(name)
            self.events.append(f"start {name}@{key}")
            started.set()
            try:
                await asyncio.Future()
            finally:
                self.running.discard(name)
                self.events.append(f"stop {name}@{key}")

        return Component(name, stage, key, run)


async def test_apply_restarts_only_what_changed() -> None:
    log = Log()
    async with asyncio.TaskGroup() as tg:
        parts = Components(tg)
        first = await parts.apply([log.comp("a", "1"), log.comp("b", "1"), log.comp("c", "1")])
        assert first.started == ["a", "b", "c"]
        await asyncio.gather(*(e.wait() for e in log.started.values()))
        log.events.clear()

        changes = await parts.apply([log.comp("a", "1"), log.comp("b", "2"), log.comp("d", "1")])
        assert (changes.restarted, changes.started, changes.stopped) == (["b"], ["d"], ["c"])
        assert changes.summary() == "restarted b; started d; stopped c"
        await log.started["b@2"].wait()
        await log.started["d@1"].wait()
        # the old b is gone before the new one starts; a was never touched
        assert log.events.index("stop b@1") < log.events.index("start b@2")
        assert not [e for e in log.events if e.endswith(" a@1")]

        same = await parts.apply([log.comp("a", "1"), log.comp("b", "2"), log.comp("d", "1")])
        assert not same
        assert same.summary() == "nothing changed"
        await parts.stop_all()
    assert log.running == set()


async def test_stop_all_goes_stage_by_stage() -> None:
    log = Log()
    seen: list[tuple[int, set[str]]] = []

    async def before(stage: int) -> None:
        seen.append((stage, set(log.running)))

    async with asyncio.TaskGroup() as tg:
        parts = Components(tg)
        await parts.apply([log.comp("sink", "k", 3), log.comp("input", "k", 1)])
        await asyncio.gather(*(e.wait() for e in log.started.values()))
        await parts.stop_all(before)
    assert seen == [(1, {"sink", "input"}), (3, {"sink"})]
    assert log.events[-2:] == ["stop input@k", "stop sink@k"]


async def test_a_component_that_swallows_its_cancel_is_named_and_left_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log()
    released = asyncio.Event()  # the test's own way to end it, so no task outlives the test
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # the fault: a stop swallowed
                await released.wait()

    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as tg:
        parts = Components(tg)
        comps = [log.comp("sink", "k", 3), Component("stubborn", 1, "k", stubborn)]
        await parts.apply([*comps, log.comp("input", "k", 1)])
        await asyncio.gather(started.wait(), *(e.wait() for e in log.started.values()))
        began = loop.time()
        await parts.stop_all(deadline=0.5)
        took = loop.time() - began
        assert parts.abandoned == ["stubborn"]
        assert log.running == set()  # the stages after it were stopped all the same
    # the group did not wait for it either: left behind, still running
    assert took < 0.5 + STAGE_GRACE_MIN + 0.5
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("stubborn did not stop within" in m for m in errors)
    released.set()
    await asyncio.sleep(0)  # it sees the event and ends
    for task in asyncio.all_tasks():
        if task.get_name() == "stubborn:run":
            await task


async def test_a_component_failing_on_its_way_out_still_fails_the_group() -> None:
    async def fails_on_stop() -> None:
        try:
            await asyncio.Future()
        finally:
            raise RuntimeError("broken release")

    with pytest.RaisesGroup(RuntimeError):
        async with asyncio.TaskGroup() as tg:
            parts = Components(tg)
            await parts.apply([Component("bad", 1, "k", fails_on_stop)])
            await asyncio.sleep(0)
            await parts.stop_all()
