"""The store's invariants on real SQLite files: lanes, seq, cursors, quota, corruption."""

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.contract import iso
from gateway.core.errors import StoreError
from gateway.core.messages import Json, Lane, Point, Quality, Record
from gateway.store import outbox
from gateway.store.outbox import Row, Store, StoreFullError

QUOTA = 256 * 1024
RESERVE = 32 * 1024


def rec(lane: Lane, device: str = "d1", n: int = 0, size: int = 20, ts: float = 1e9) -> Record:
    topic = f"telemetry/{device}"
    if lane is Lane.TELEMETRY:
        points = (Point("n", n, "", Quality.GOOD), Point("pad", "x" * size, "", Quality.GOOD))
        return Record(lane, topic, ts + n, True, device, points=points)
    fields: dict[str, Json] = {"device": device, "n": n, "pad": "x" * size}
    return Record(lane, topic, ts + n, True, device, fields=fields)


def num(row: Row) -> int:
    """The ``n`` a row was made with by ``rec``."""
    value = row.points[0].value if row.lane is Lane.TELEMETRY else row.fields["n"]
    assert isinstance(value, int)
    return value


async def open_store(path: Path, sinks: tuple[str, ...] = ("mqtt",), quota: int = QUOTA) -> Store:
    return await Store.open(path, quota=quota, reserve=RESERVE, sinks=sinks)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "buf.db")
    try:
        yield s
    finally:
        await s.close()


async def drain(store: Store, sink: str = "mqtt") -> list[Row]:
    """Fetch everything for ``sink`` and confirm it."""
    got: list[Row] = []
    while rows := await store.fetch(sink, 1000):
        got += rows
    upto: dict[Lane, int] = {}
    for row in got:
        upto[row.lane] = max(upto.get(row.lane, 0), row.id)
    await store.ack(sink, upto)
    return got


async def test_lanes_drain_in_priority_order(store: Store) -> None:
    store.add(rec(Lane.TELEMETRY, n=1))
    store.add(rec(Lane.EVENT, n=2))
    store.add(rec(Lane.TELEMETRY, n=3))
    store.add(rec(Lane.ALARM, n=4))
    await store.flush()
    rows = await store.fetch("mqtt", 10)
    assert [r.lane for r in rows] == [Lane.ALARM, Lane.EVENT, Lane.TELEMETRY, Lane.TELEMETRY]
    assert [num(r) for r in rows] == [4, 2, 1, 3]


async def test_seq_per_lane_is_dense_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    s = await open_store(path)
    for i in range(3):
        s.add(rec(Lane.TELEMETRY, n=i))
    s.add(rec(Lane.EVENT))
    await s.flush()
    first = await drain(s)
    await s.close()
    s = await open_store(path)
    try:
        s.add(rec(Lane.TELEMETRY, n=9))
        await s.flush()
        rows = await s.fetch("mqtt", 10)
    finally:
        await s.close()
    assert [(r.lane, r.seq) for r in first] == [
        (Lane.EVENT, 1),
        (Lane.TELEMETRY, 1),
        (Lane.TELEMETRY, 2),
        (Lane.TELEMETRY, 3),
    ]
    assert [(r.lane, r.seq) for r in rows] == [(Lane.TELEMETRY, 4)]


async def test_unconfirmed_rows_come_back_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    s = await open_store(path)
    for i in range(5):
        s.add(rec(Lane.TELEMETRY, n=i))
    await s.flush()
    rows = await s.fetch("mqtt", 10)
    await s.ack("mqtt", {Lane.TELEMETRY: rows[1].id})  # two confirmed, three in flight
    await s.close()
    s = await open_store(path)
    try:
        again = await s.fetch("mqtt", 10)
    finally:
        await s.close()
    assert [num(r) for r in again] == [2, 3, 4]


async def test_rewind_hands_out_unconfirmed_rows_again(store: Store) -> None:
    for i in range(4):
        store.add(rec(Lane.TELEMETRY, n=i))
    await store.flush()
    rows = await store.fetch("mqtt", 10)
    assert await store.fetch("mqtt", 10) == []
    await store.ack("mqtt", {Lane.TELEMETRY: rows[0].id})
    store.rewind("mqtt")
    assert [num(r) for r in await store.fetch("mqtt", 10)] == [1, 2, 3]


async def test_give_back_returns_the_unsent_tail(store: Store) -> None:
    for i in range(4):
        store.add(rec(Lane.TELEMETRY, n=i))
    await store.flush()
    rows = await store.fetch("mqtt", 10)
    store.give_back("mqtt", rows[2:])
    assert [num(r) for r in await store.fetch("mqtt", 10)] == [2, 3]


async def test_rows_stay_until_every_sink_confirms(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "buf.db", sinks=("mqtt", "influx"))
    try:
        for i in range(3):
            s.add(rec(Lane.TELEMETRY, n=i))
        await s.flush()
        await drain(s, "mqtt")
        assert (await s.count_rows()).get(Lane.TELEMETRY) == 3
        assert s.backlog("mqtt") == 0
        await drain(s, "influx")
        assert (await s.count_rows()).get(Lane.TELEMETRY) is None
        assert s.stats().used_bytes == 0
    finally:
        await s.close()


async def test_a_sink_restricted_to_telemetry_never_holds_alarms(tmp_path: Path) -> None:
    s = await Store.open(
        tmp_path / "buf.db",
        quota=QUOTA,
        reserve=RESERVE,
        sinks=["mqtt", "influx"],
        lanes={"influx": [Lane.TELEMETRY]},
    )
    try:
        s.add(rec(Lane.ALARM, n=1))
        s.add(rec(Lane.TELEMETRY, n=2))
        await s.flush()
        assert [r.lane for r in await s.fetch("influx", 10)] == [Lane.TELEMETRY]
        assert not s.has_more_urgent("influx", Lane.TELEMETRY)
        await drain(s, "mqtt")
        # the alarm is gone once MQTT confirmed it; the telemetry still waits for influx
        assert await s.count_rows() == {Lane.TELEMETRY: 1}
        assert s.backlog("influx") > 0
    finally:
        await s.close()


async def test_more_urgent_lane_is_signalled(store: Store) -> None:
    store.add(rec(Lane.TELEMETRY))
    await store.flush()
    await store.fetch("mqtt", 10)
    assert not store.has_more_urgent("mqtt", Lane.TELEMETRY)
    store.add(rec(Lane.ALARM))
    await store.flush()
    assert store.has_more_urgent("mqtt", Lane.TELEMETRY)
    assert store.has_more_urgent("mqtt", Lane.EVENT)
    assert not store.has_more_urgent("mqtt", Lane.ALARM)


async def test_quota_evicts_oldest_telemetry_and_reports_a_gap(store: Store) -> None:
    produced = 0
    for i in range(600):  # ~600 x 500 B: well over the 224 KiB telemetry share
        store.add(rec(Lane.TELEMETRY, device="pm-1", n=i, size=400))
        produced += 1
        if i % 50 == 0:
            await store.flush()
    store.add(rec(Lane.EVENT, device="pm-1", n=10_000))
    await store.flush()
    stats = store.stats()
    assert stats.used_bytes <= QUOTA
    counts = await store.count_rows()
    rows = await drain(store)
    tele = [num(r) for r in rows if r.lane is Lane.TELEMETRY]
    gaps: list[Mapping[str, Any]] = [r.fields for r in rows if r.topic == "gap"]
    assert stats.evicted > 0
    # produced = kept + evicted, exactly; nothing else vanished
    assert len(tele) + stats.evicted + stats.dropped == produced
    assert tele == sorted(tele)
    assert tele[-1] == produced - 1
    assert tele[0] == stats.evicted  # evicted exactly the oldest ones
    assert sum(g["count"] for g in gaps) == stats.evicted
    assert {g["device"] for g in gaps} == {"pm-1"}
    assert counts[Lane.EVENT] >= 2  # the event itself and the gap report survive


async def test_gap_reports_coalesce_until_handed_out(store: Store) -> None:
    for i in range(1200):
        store.add(rec(Lane.TELEMETRY, device="pm-1", n=i, size=400))
        if i % 20 == 0:
            await store.flush()
    await store.flush()
    gaps = [r for r in await store.fetch("mqtt", 5000) if r.topic == "gap"]
    assert len(gaps) == 1
    assert gaps[0].fields["count"] == store.stats().evicted


async def test_readings_dropped_by_a_full_queue_are_in_a_gap_report(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "MAX_QUEUED", 10)
    for i in range(15):  # the commit is late (a slow disk): five readings find no place
        store.add(rec(Lane.TELEMETRY, device="pm-1", n=i))
    store.add(rec(Lane.TELEMETRY, device="th-1", n=99))
    await store.flush()
    rows = await drain(store)
    assert [num(r) for r in rows if r.lane is Lane.TELEMETRY] == list(range(10))
    gaps = sorted(
        (dict(r.fields) for r in rows if r.topic == "gap"), key=lambda g: str(g["device"])
    )
    assert [(g["device"], g["count"], g["from"], g["to"]) for g in gaps] == [
        ("pm-1", 5, iso(1e9 + 10), iso(1e9 + 14)),
        ("th-1", 1, iso(1e9 + 99), iso(1e9 + 99)),
    ]
    assert store.stats().dropped == 6


async def test_event_seq_stays_unique_when_a_gap_report_is_written(store: Store) -> None:
    store.add(rec(Lane.EVENT, n=-1))
    await store.flush()
    for i in range(700):  # evicts, writing gap reports into the event lane
        store.add(rec(Lane.TELEMETRY, device="pm-1", n=i, size=400))
    await store.flush()
    store.add(rec(Lane.EVENT, n=-2))
    await store.flush()
    events = [r.seq for r in await store.fetch("mqtt", 5000) if r.lane is Lane.EVENT]
    assert store.stats().evicted > 0
    assert sorted(events) == list(range(1, len(events) + 1))


async def test_transact_commits_state_and_records_together(store: Store) -> None:
    def create(conn: sqlite3.Connection) -> int:
        conn.execute("CREATE TABLE IF NOT EXISTS t(x INTEGER)")
        conn.execute("INSERT INTO t(x) VALUES(42)")
        return 7

    assert await store.transact(create, [rec(Lane.ALARM, n=1)]) == 7
    rows = await store.fetch("mqtt", 10)
    assert [(r.lane, r.seq) for r in rows] == [(Lane.ALARM, 1)]

    def fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t(x) VALUES(43)")
        raise sqlite3.IntegrityError("boom")

    with pytest.raises(StoreError, match="boom"):
        await store.transact(fail, [rec(Lane.ALARM, n=2)])
    assert await store.fetch("mqtt", 10) == []  # neither the row nor the state went in
    count = await store.transact(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    assert count == 1


async def test_alarms_and_events_are_never_evicted(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "buf.db", quota=128 * 1024)
    try:
        for i in range(100):
            s.add(rec(Lane.ALARM, n=i, size=400))
        await s.flush()
        for i in range(400):
            s.add(rec(Lane.TELEMETRY, n=i, size=400))
        await s.flush()
        counts = await s.count_rows()
        assert counts[Lane.ALARM] == 100
        assert s.stats().used_bytes <= 128 * 1024
        # alarms beyond the whole quota are refused loudly and kept, never dropped silently
        for i in range(400):
            s.add(rec(Lane.ALARM, n=1000 + i, size=400))
        with pytest.raises(StoreFullError, match="waiting in memory"):
            await s.flush()
        alarms = [num(r) for r in await drain(s) if r.lane is Lane.ALARM]
        while True:  # as the sink confirms, the waiting alarms go in, in order
            with contextlib.suppress(StoreFullError):
                await s.flush()
            got = [num(r) for r in await drain(s) if r.lane is Lane.ALARM]
            if not got:
                break
            alarms += got
        assert alarms == list(range(100)) + [1000 + i for i in range(400)]
    finally:
        await s.close()


async def test_corrupt_file_is_quarantined_and_a_fresh_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    path.write_bytes(b"this is not an sqlite database" * 200)
    s = await open_store(path)
    try:
        assert s.quarantined is not None
        assert s.quarantined.exists()
        assert s.quarantined.read_bytes().startswith(b"this is not")
        assert s.stats().quarantined == 1
        s.add(rec(Lane.TELEMETRY))
        await s.flush()
        got = await s.fetch("mqtt", 10)
        assert [r.topic for r in got] == ["store-replaced", "telemetry/d1"]
        assert (got[0].fields["rows_left"], got[0].fields["alarms_left"]) == (None, None)
    finally:
        await s.close()


async def test_damaged_pages_after_unclean_stop_are_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "buf.db"
    s = await open_store(path)
    for i in range(300):
        s.add(rec(Lane.TELEMETRY, n=i, size=300))
    await s.flush()
    await s.close()
    with sqlite3.connect(path) as conn:  # as if the process died: no clean-shutdown mark
        conn.execute("UPDATE meta SET value='0' WHERE key='clean'")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(2 * page, min(len(data), 10 * page)):  # scribble over b-tree pages
        data[i] = 0xA5
    path.write_bytes(bytes(data))
    s = await open_store(path)
    try:
        assert s.quarantined is not None
        assert [r.topic for r in await s.fetch("mqtt", 10)] == ["store-replaced"]
    finally:
        await s.close()


@pytest.mark.parametrize("start", [2, 5])
async def test_damaged_pages_of_a_cleanly_closed_file_are_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, start: int
) -> None:
    """No quick_check runs for a file marked clean: the damage shows on the first read."""
    path = tmp_path / "buf.db"
    s = await open_store(path)
    for i in range(300):
        s.add(rec(Lane.TELEMETRY, n=i, size=300))
    await s.flush()
    await s.close()  # marked clean
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(start * page, min(len(data), (start + 8) * page)):
        data[i] = 0xA5
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="gateway.store"):
        s = await open_store(path)
    try:
        assert s.quarantined is not None
        assert s.quarantined.read_bytes() == bytes(data)  # moved aside untouched
        assert "is corrupt" in caplog.text
        assert s.stats().quarantined == 1
        s.add(rec(Lane.ALARM, n=1))
        await s.flush()
        alarm, replaced = await s.fetch("mqtt", 10)  # alarms first, then events
        assert (alarm.lane, replaced.topic) == (Lane.ALARM, "store-replaced")
        assert replaced.fields["reason"] == "corrupt"
        assert replaced.fields["moved_to"] == s.quarantined.name
        left = replaced.fields["rows_left"]  # what a damaged file still gives, or unknown
        assert left is None or isinstance(left, int)
    finally:
        await s.close()


async def test_unusable_path_is_a_clear_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="file"):
        await open_store(blocker / "sub" / "buf.db")


lane_st = st.sampled_from([Lane.ALARM, Lane.EVENT, Lane.TELEMETRY])
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("add"), lane_st),
        st.tuples(st.just("flush"), st.none()),
        st.tuples(st.just("send"), st.tuples(st.integers(1, 8), st.integers(0, 8))),
        st.tuples(st.just("reconnect"), st.none()),
        st.tuples(st.just("restart"), st.none()),
    ),
    max_size=60,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops_st)
async def test_model_every_row_is_delivered_once_in_order(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, object]]
) -> None:
    """Random adds, partly confirmed sends, reconnects and restarts: each row confirmed once."""
    path = tmp_path_factory.mktemp("model") / "buf.db"
    s = await open_store(path, quota=16 * 1024 * 1024)
    added = 0
    delivered: dict[Lane, list[int]] = {ln: [] for ln in Lane}
    try:
        for op, arg in ops:
            if op == "add":
                assert isinstance(arg, Lane)
                s.add(rec(arg, n=added))
                added += 1
            elif op == "flush":
                await s.flush()
            elif op == "send":
                assert isinstance(arg, tuple)
                rows = await s.fetch("mqtt", arg[0])
                upto: dict[Lane, int] = {}
                for r in rows[: arg[1]]:  # the rest "lost their PUBACK"
                    delivered[r.lane].append(r.seq)
                    upto[r.lane] = r.id
                await s.ack("mqtt", upto)
                if arg[1] < len(rows):
                    # a lost PUBACK ends in a timeout and a new connection, as in the sink:
                    # a sink never confirms past a row it has not had confirmed
                    s.rewind("mqtt")
            elif op == "reconnect":
                s.rewind("mqtt")
            else:
                await s.close()
                s = await open_store(path, quota=16 * 1024 * 1024)
        await s.flush()
        s.rewind("mqtt")
        for r in await drain(s):
            delivered[r.lane].append(r.seq)
    finally:
        await s.close()
    assert sum(len(v) for v in delivered.values()) == added
    for seqs in delivered.values():
        assert seqs == list(range(1, len(seqs) + 1))


async def test_rows_past_retention_are_purged_even_if_never_delivered(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "r.db")
    try:
        fields: dict[str, Json] = {"person": "p1:x"}
        personal = Record(Lane.EVENT, "event/door-1", 1e9, True, "door-1", fields=fields)
        store.add(dataclasses.replace(personal, expires=1000.0))
        store.add(dataclasses.replace(personal, expires=2000.0))
        store.add(rec(Lane.EVENT, n=1))  # no retention: kept until delivered
        await store.flush()
        used = store.stats().used_bytes

        assert await store.purge_expired(999.0) == 0
        assert await store.purge_expired(1500.0) == 1
        assert store.stats().purged == 1
        assert store.stats().used_bytes < used
        left = await drain(store)
        assert [r.fields for r in left] == [{"person": "p1:x"}, rec(Lane.EVENT, n=1).fields]
    finally:
        await store.close()
    again = await open_store(tmp_path / "r.db")  # the count is persisted
    try:
        assert again.stats().purged == 1
    finally:
        await again.close()


async def test_a_store_from_before_retention_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE outbox(id INTEGER PRIMARY KEY AUTOINCREMENT, lane INTEGER NOT NULL,"
        " seq INTEGER NOT NULL, topic TEXT NOT NULL, device TEXT NOT NULL, ts REAL NOT NULL,"
        " synced INTEGER NOT NULL, retain INTEGER NOT NULL, body TEXT NOT NULL,"
        " size INTEGER NOT NULL)"
    )
    conn.execute(
        "INSERT INTO outbox(lane, seq, topic, device, ts, synced, retain, body, size)"
        " VALUES(2, 1, 'telemetry/d1', 'd1', 1e9, 1, 0, '{\"device\":\"d1\",\"points\":[]}', 70)"
    )
    conn.commit()
    conn.close()
    store = await open_store(path)
    try:
        assert [r.points for r in await drain(store)] == [()]  # the old row is kept
        store.add(dataclasses.replace(rec(Lane.EVENT), expires=5.0))
        await store.flush()
        assert await store.purge_expired(10.0) == 1
    finally:
        await store.close()


async def test_settled_returns_once_what_was_queued_before_it_is_committed(store: Store) -> None:
    assert (await store.count_rows()).get(Lane.EVENT, 0) == 0
    await store.settled()  # nothing queued: at once
    store.add(rec(Lane.EVENT, n=1))
    store.add(rec(Lane.TELEMETRY, n=2))
    await store.settled()  # commits the queue itself
    counts = await store.count_rows()
    assert (counts[Lane.EVENT], counts[Lane.TELEMETRY]) == (1, 1)

    store.add(rec(Lane.EVENT, n=3))
    committing = asyncio.ensure_future(store.flush())  # the committer takes the batch first
    await asyncio.sleep(0)  # one step: it took the queue and waits for the store thread
    assert not committing.done()
    await store.settled()  # the record is not queued any more, but not written yet either
    assert committing.done()
    assert (await store.count_rows())[Lane.EVENT] == 2
