"""The dedup memory's file writes run off the event loop, one at a time, and close writes last."""

import asyncio
import json
import random
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from gateway.core.clock import ManualClock
from gateway.pipeline.dedup import DedupCache, DedupFile, DedupMemory, Entry, Key


class _Gate:
    """Records the thread of every write and lets the test hold the first one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: list[int] = []
        self.active = 0
        self.most = 0
        self.started = asyncio.Event()
        self.release = threading.Event()
        self._loop = asyncio.get_running_loop()
        real = DedupFile.save

        def save(file: DedupFile, caches: Mapping[str, Sequence[Entry]]) -> None:
            self.threads.append(threading.get_ident())
            self.active += 1
            self.most = max(self.most, self.active)
            try:
                self._loop.call_soon_threadsafe(self.started.set)
                self.release.wait(10)
                real(file, caches)
            finally:
                self.active -= 1

        monkeypatch.setattr(DedupFile, "save", save)


async def memory_idle(memory: DedupMemory) -> None:
    """Until the write in flight, if any, is done."""
    writing = memory._writing
    if writing is not None:
        await asyncio.wait({writing})


def _memory(path: Path) -> DedupMemory:
    return DedupMemory(path, {"sos": (60.0, 1000)}, ManualClock(wall=100.0))


async def test_the_save_runs_in_a_worker_thread_never_two_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _Gate(monkeypatch)
    memory = _memory(tmp_path / "ids.json")
    cache = memory.caches["sos"]
    cache.add(("b", "e-0", True), 100.0)
    memory.save_soon()
    await asyncio.wait_for(gate.started.wait(), 10)  # the first write is held in its thread
    for i in range(1, 50):  # a storm while it is held
        cache.add(("b", f"e-{i}", True), 100.0)
        memory.save_soon()
    gate.release.set()
    memory.close()
    assert threading.get_ident() not in gate.threads[:-1]  # only close writes on this thread
    assert gate.most == 1
    saved = json.loads((tmp_path / "ids.json").read_text())["buttons"]["sos"]
    assert len(saved) == 50  # the last state


async def test_a_pass_during_a_write_is_written_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _Gate(monkeypatch)
    monkeypatch.setattr("gateway.pipeline.dedup.SAVE_EVERY", 0.0)
    memory = _memory(tmp_path / "ids.json")
    memory.caches["sos"].add(("b", "e-0", True), 100.0)
    memory.save_soon()
    await asyncio.wait_for(gate.started.wait(), 10)
    gate.started.clear()
    memory.caches["sos"].add(("b", "e-1", True), 100.0)
    memory.save_soon()  # during the held write: remembered, not started
    assert gate.most == 1
    assert len(gate.threads) == 1
    gate.release.set()
    await asyncio.wait_for(gate.started.wait(), 10)  # the follow-up write
    assert len(gate.threads) == 2
    assert threading.get_ident() not in gate.threads
    memory.close()
    saved = json.loads((tmp_path / "ids.json").read_text())["buttons"]["sos"]
    assert [e[1] for e in saved] == ["e-0", "e-1"]


async def test_a_failing_write_is_logged_once_and_close_still_tries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.pipeline.dedup.SAVE_EVERY", 0.0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    memory = _memory(blocker / "ids.json")  # its folder is a file: every write fails
    attempts = 0
    tried = asyncio.Event()
    loop = asyncio.get_running_loop()
    real = DedupFile.save

    def save(file: DedupFile, caches: Mapping[str, Sequence[Entry]]) -> None:
        nonlocal attempts
        attempts += 1
        loop.call_soon_threadsafe(tried.set)
        real(file, caches)

    monkeypatch.setattr(DedupFile, "save", save)
    for i in range(2):
        memory.caches["sos"].add(("b", f"e-{i}", True), 100.0)
        memory.save_soon()
        await asyncio.wait_for(tried.wait(), 10)
        tried.clear()
        await memory_idle(memory)
    memory.close()
    assert attempts == 3
    failures = [r for r in caplog.records if r.getMessage().startswith("cannot write dedup")]
    assert len(failures) == 1


class _Reference:
    """The cache's contract, written the obvious way."""

    def __init__(self, window: float, size: int) -> None:
        self.window, self.size = window, size
        self.first: OrderedDict[Key, float] = OrderedDict()

    def fresh(self, ts: float, now: float) -> bool:
        return -self.window <= now - ts <= self.window

    def seen(self, key: Key, now: float) -> bool:
        while self.first and not self.fresh(next(iter(self.first.values())), now):
            self.first.popitem(last=False)
        ts = self.first.get(key)
        if ts is not None and not self.fresh(ts, now):
            del self.first[key]
            return False
        return ts is not None

    def add(self, key: Key, now: float) -> None:
        self.first.pop(key, None)
        self.first[key] = now
        while len(self.first) > self.size:
            self.first.popitem(last=False)


def test_the_cache_behaves_as_an_ordered_window_under_random_traffic() -> None:
    rng = random.Random(7)
    cache, reference = DedupCache(10.0, 20), _Reference(10.0, 20)
    now = 0.0
    for _ in range(20_000):
        now += rng.choice([0.0, 0.1, 1.0, -5.0, 3.0])  # clock steps back now and then
        key = ("d", str(rng.randrange(40)), rng.random() < 0.5)
        ts = now + rng.choice([0.0, 0.0, -20.0, 20.0])
        assert cache.seen(key, now) == reference.seen(key, now)
        if rng.random() < 0.7:
            cache.add(key, ts)
            reference.add(key, ts)
        assert cache.entries(now) == [
            (k, t) for k, t in reference.first.items() if reference.fresh(t, now)
        ]
        assert len(cache) == len(reference.first)


async def test_with_settled_no_key_reaches_the_file_before_its_event_is_committed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ids.json"
    committed = asyncio.Event()  # the alarm of the first press is committed
    asked = asyncio.Event()

    async def settled() -> None:
        asked.set()
        await committed.wait()

    memory = DedupMemory(path, {"sos": (60.0, 1000)}, ManualClock(wall=100.0), settled)
    memory.caches["sos"].add(("b", "e-1", True), 100.0)
    memory.save_soon()
    await asyncio.wait_for(asked.wait(), 5)  # the write waits for the commit
    assert not path.exists()
    memory.caches["sos"].add(("b", "e-2", True), 100.0)  # a later press, not committed
    committed.set()
    await memory_idle(memory)
    assert DedupFile(path).load()["sos"] == [(("b", "e-1", True), 100.0)]  # only the first

    committed.clear()
    asked.clear()
    memory.save_soon()  # e-2's write: it waits for a commit that never comes
    await asyncio.wait_for(asked.wait(), 5)
    memory.close()  # a stop (or a crash) now: e-2 is not written
    assert DedupFile(path).load()["sos"] == [(("b", "e-1", True), 100.0)]
