"""The store file's versioned schema: old files are migrated, newer ones refused untouched."""

import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.core.clock import ManualClock
from gateway.core.contract import Identity, render
from gateway.core.messages import Lane, Record
from gateway.reports.history import DeviceInfo
from gateway.reports.recorder import Recorder
from gateway.store import Store
from gateway.store.db import Schema, open_db
from gateway.store.schema import STORE, unclean
from tests.fixtures.make_store_v0 import wire
from tests.support.schemas import validate_message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def open_v0_copy(tmp_path: Path) -> Store:
    path = tmp_path / "buffer.db"
    shutil.copy(FIXTURES / "store_v0.db", path)
    assert user_version(path) == 0
    return await open_fixture_store(path)


async def open_fixture_store(path: Path) -> Store:
    return await Store.open(
        path,
        quota=12 * 1024,
        reserve=2 * 1024,
        sinks=["mqtt", "influx"],
        lanes={"influx": [Lane.TELEMETRY]},
    )


async def delivered(store: Store, ident: Identity, sink: str) -> list[dict[str, Any]]:
    """Everything ``store`` owes ``sink``, as the fixture's expectations keep it."""
    got = []
    while rows := await store.fetch(sink, 7):
        got += [wire(ident, row) for row in rows]
    return got


async def test_a_store_of_the_unversioned_release_delivers_what_it_owed(tmp_path: Path) -> None:
    expected: dict[str, Any] = json.loads((FIXTURES / "expected_v0.json").read_text())
    ident = Identity(*expected["ident"])
    store = await open_v0_copy(tmp_path)
    try:
        for sink in ("mqtt", "influx"):
            assert await delivered(store, ident, sink) == expected[sink], sink
        assert store.stats().evicted == expected["stats"]["evicted"]
        # fields take less room than the upstream JSON did
        assert 0 < store.stats().used_bytes < expected["stats"]["used_bytes"]
        alarms = await store.transact(lambda c: c.execute("SELECT id, open FROM alarms").fetchall())
        assert alarms == [("a1", 1)]
        # seqs go on from where the old release stopped
        store.add(Record(Lane.ALARM, "alarm/a2", 1.9e9, True, "d", fields={"n": 2}))
        await store.flush()
        assert [r.seq for r in await store.fetch("mqtt", 10)] == [2]
    finally:
        await store.close()
    assert user_version(tmp_path / "buffer.db") == STORE.version


async def test_a_version_2_store_delivers_the_same_bytes_after_its_points_are_rewritten(
    tmp_path: Path,
) -> None:
    """Version 2 kept points as arrays; version 3 keeps the contract's objects: same wire."""
    expected: dict[str, Any] = json.loads((FIXTURES / "expected_v0.json").read_text())
    ident = Identity(*expected["ident"])
    path = tmp_path / "buffer.db"
    shutil.copy(FIXTURES / "store_v0.db", path)
    v2 = Schema("store", STORE.migrations[:2])
    open_db(path, v2, needs_check=unclean).conn.close()
    assert user_version(path) == 2
    conn = sqlite3.connect(path)
    arrays = conn.execute("SELECT body FROM outbox WHERE lane=?", (int(Lane.TELEMETRY),)).fetchall()
    conn.close()
    assert arrays
    assert all(body.startswith("[[") for (body,) in arrays)  # the version-2 form

    store = await open_fixture_store(path)
    try:
        for sink in ("mqtt", "influx"):
            assert await delivered(store, ident, sink) == expected[sink], sink
    finally:
        await store.close()
    assert user_version(path) == STORE.version == 5


async def test_a_version_3_store_gains_the_availability_history_and_no_invented_outage(
    tmp_path: Path,
) -> None:
    """Version 4 adds tables only: what the file owed is delivered as before, and the first
    start with the history records no gateway outage (it never stamped itself alive)."""
    expected: dict[str, Any] = json.loads((FIXTURES / "expected_v0.json").read_text())
    path = tmp_path / "buffer.db"
    shutil.copy(FIXTURES / "store_v0.db", path)
    open_db(path, Schema("store", STORE.migrations[:3]), needs_check=unclean).conn.close()
    assert user_version(path) == 3

    store = await open_fixture_store(path)
    try:
        assert user_version(path) == STORE.version
        recorder = Recorder(ManualClock(), "Asia/Shanghai")
        await recorder.begin(store, [DeviceInfo("pm-1", "modbus", "acme", 60.0)])
        recorder.availability("pm-1", True, 1_800_000_000.0)
        await recorder.flush(store)
        tables = await store.transact(
            lambda c: [
                c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("restarts", "availability", "devices")
            ]
        )
        assert tables == [0, 1, 1]
        for sink in ("mqtt", "influx"):
            assert await delivered(store, Identity(*expected["ident"]), sink) == expected[sink]
    finally:
        await store.close()


async def test_a_fresh_store_is_at_the_current_version(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "b.db", quota=1 << 20, reserve=1 << 16, sinks=["mqtt"])
    await store.close()
    assert user_version(tmp_path / "b.db") == STORE.version


async def test_a_store_of_a_newer_release_is_moved_aside_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "buffer.db"
    store = await Store.open(path, quota=1 << 20, reserve=1 << 16, sinks=["mqtt"])
    store.add(Record(Lane.ALARM, "alarm/a1", 1.9e9, True, "d", fields={"n": 1}))
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version={STORE.version + 1}")
    conn.execute("PRAGMA journal_mode=DELETE")  # one file, so its bytes can be compared
    conn.close()
    before = path.read_bytes()

    with caplog.at_level(logging.CRITICAL, logger="gateway.store.db"):
        store = await Store.open(path, quota=1 << 20, reserve=1 << 16, sinks=["mqtt"])
    try:
        assert store.quarantined is not None
        assert store.quarantined.read_bytes() == before  # not a byte written
        # a fresh store, whose first message tells the platform what the old one still held
        (row,) = await store.fetch("mqtt", 10)
        topic, payload = render(Identity("cgw", "s1", "gw1"), row)
        body = validate_message("cgw/s1/gw1", topic, payload)
        assert (topic, body["reason"], body["moved_to"]) == (
            "cgw/s1/gw1/store-replaced",
            "newer",
            store.quarantined.name,
        )
        assert (body["rows_left"], body["alarms_left"]) == (1, 1)
    finally:
        await store.close()
    assert [r.levelname for r in caplog.records] == ["CRITICAL"]
    assert str(store.quarantined) in caplog.text
    assert user_version(path) == STORE.version


async def test_a_replaced_store_never_repeats_a_dedup_key_the_platform_has_seen(
    tmp_path: Path,
) -> None:
    """(site, gateway, epoch, lane, seq): kept across restarts, new with a fresh file."""
    path = tmp_path / "buffer.db"
    seen: set[tuple[object, ...]] = set()

    async def publish(store: Store) -> list[tuple[object, ...]]:
        for n in range(3):
            store.add(Record(Lane.ALARM, f"alarm/a{n}", 1.9e9 + n, True, "d", fields={"n": n}))
        await store.flush()
        ident = Identity("cgw", "s1", "gw1", epoch=store.epoch)
        keys = []
        for row in await store.fetch("mqtt", 100):
            _, payload = render(ident, row)
            body = json.loads(payload)
            keys.append(tuple(body[k] for k in ("site_id", "gateway_id", "epoch", "lane", "seq")))
        return keys

    store = await Store.open(path, quota=1 << 20, reserve=1 << 16, sinks=["mqtt"])
    first_epoch = store.epoch
    try:
        first = await publish(store)  # sent, never confirmed: a restart sends them again
    finally:
        await store.close()
    seen.update(first)
    store = await Store.open(path, quota=1 << 20, reserve=1 << 16, sinks=["mqtt"])
    try:
        assert store.epoch == first_epoch  # the same file: resends dedup against the first
        again = await publish(store)
        assert again[:3] == first  # the unconfirmed three, the same keys
    finally:
        await store.close()
    seen.update(again)

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version={STORE.version + 1}")  # a downgrade: moved aside
    conn.close()
    store = await Store.open(path, quota=1 << 20, reserve=1 << 16, sinks=["mqtt"])
    try:
        assert store.quarantined is not None
        assert store.epoch != first_epoch
        fresh = await publish(store)
    finally:
        await store.close()
    assert [k[4] for k in fresh if k[3] == "alarm"] == [1, 2, 3]  # seqs start again ...
    assert seen.isdisjoint(fresh)  # ... under keys the platform has never seen
