"""The store-and-forward buffer: SQLite in WAL mode, the one record of what is not delivered.

Invariants (each kept by doing every change inside one ``BEGIN IMMEDIATE ... COMMIT``):

1. A row stays in ``outbox`` until every sink's cursor for its lane has passed it.
2. A cursor ``(sink, lane) -> last_id`` only moves forward, and only over rows that sink has
   confirmed (sinks confirm contiguous prefixes of a lane, never a row with a hole before it).
3. ``seq`` is per lane, strictly increasing and never reused: ``lane_seq`` is updated in the
   transaction that inserts the rows. ``(gateway_id, lane, seq)`` is the upstream dedup key.
4. Only telemetry is ever evicted, oldest first. Every eviction is counted and reported by a
   ``gap`` row in the event lane, written in the same transaction as the deletion.
5. Alarm and event rows may use the whole quota; telemetry only ``quota - reserve``.
6. A row with ``expires`` (personal data past its retention) is deleted once that wall time
   has passed, delivered or not, and counted as ``purged``: retention beats delivery.

Crash consistency: with WAL and ``synchronous=FULL`` a committed transaction survives a killed
process and, on storage that honours flushes, a power cut. Rows queued by ``add`` but not yet
committed (at most ``commit_interval`` of telemetry) are lost by a kill -9; that is the
documented window. A database that fails its check at start is moved aside, never deleted,
and a fresh one is opened, so a corrupt file never becomes a crash loop. An I/O error while
writing is fatal (``StoreError``): the daemon exits and systemd restarts it, so nothing is
acknowledged that was not written.

All SQLite calls run on one private thread; the event loop never blocks on the disk.
"""

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.core.contract import iso
from gateway.core.errors import StoreError, TransientError
from gateway.core.messages import Lane, Record

log = logging.getLogger(__name__)
T = TypeVar("T")

ROW_OVERHEAD = 64  # bytes per row on top of topic and body: ids, stamps, index entry
MAX_QUEUED = 50_000  # rows waiting for a commit; beyond that telemetry is dropped and counted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lane INTEGER NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL, device TEXT NOT NULL,
    ts REAL NOT NULL, synced INTEGER NOT NULL, retain INTEGER NOT NULL,
    body TEXT NOT NULL, size INTEGER NOT NULL, expires REAL);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox(lane, id);
CREATE TABLE IF NOT EXISTS lane_seq(lane INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(
    sink TEXT NOT NULL, lane INTEGER NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY(sink, lane));
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class _CorruptError(sqlite3.DatabaseError):
    """The database opened but failed its integrity check."""


class StoreFullError(TransientError):
    """An alarm or event did not fit even after evicting all telemetry."""


@dataclass(frozen=True, slots=True)
class Row:
    """A stored message as a sink sees it."""

    id: int
    lane: Lane
    seq: int
    topic: str
    device: str
    ts: float
    synced: bool
    retain: bool
    body: str


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Figures for status and metrics."""

    rows: dict[str, int]
    used_bytes: int
    quota_bytes: int
    evicted: int
    dropped: int
    quarantined: int
    purged: int = 0  # personal data deleted at the end of its retention


def _size(rec: Record) -> int:
    return len(rec.body) + len(rec.topic) + len(rec.device) + ROW_OVERHEAD


class Store:
    """The outbox. Create with ``await Store.open(...)``; close with ``await store.close()``."""

    def __init__(
        self,
        path: Path,
        quota: int,
        reserve: int,
        sinks: Sequence[str],
        lanes: Mapping[str, Collection[Lane]] | None = None,
    ) -> None:
        self.path = path
        self.quota = quota
        self.reserve = reserve
        self.sinks = tuple(sinks)
        # the lanes each sink takes (default: all); a row waits only for the sinks of its lane
        self.lanes: dict[str, tuple[Lane, ...]] = {
            s: tuple(ln for ln in Lane if lanes is None or s not in lanes or ln in lanes[s])
            for s in self.sinks
        }
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._conn: sqlite3.Connection | None = None
        self._queue: list[Record] = []
        self._used = 0
        self._latest: dict[Lane, int] = dict.fromkeys(Lane, 0)
        self._cursor: dict[str, dict[Lane, int]] = {s: dict.fromkeys(Lane, 0) for s in sinks}
        self._handed: dict[str, dict[Lane, int]] = {s: dict.fromkeys(Lane, 0) for s in sinks}
        self._counters: dict[str, int] = defaultdict(int)
        self._changed = asyncio.Event()
        self._urgent = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self.quarantined: Path | None = None

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        quota: int,
        reserve: int,
        sinks: Sequence[str],
        lanes: Mapping[str, Collection[Lane]] | None = None,
    ) -> "Store":
        """Open (creating, checking or quarantining) the database at ``path``.

        ``lanes`` restricts a sink to some lanes (an InfluxDB sink takes only telemetry); rows of
        the other lanes neither wait for it nor are handed to it.
        """
        store = cls(path, quota, reserve, sinks, lanes)
        try:
            await store._run(store._open)
        except BaseException:
            store._pool.shutdown(wait=True)
            raise
        return store

    async def close(self) -> None:
        """Commit what is queued, mark a clean shutdown and release the file."""
        try:
            if self._conn is not None:
                await self.flush()
                await self._run(self._close)
        finally:
            self._pool.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error:
            conn.close()
            raise
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA journal_size_limit=67108864")
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        # A hard ceiling far above the logical quota: the byte accounting below keeps the file
        # well under it; hitting it means a bug, reported as SQLITE_FULL instead of a full disk.
        conn.execute(f"PRAGMA max_page_count={(2 * self.quota + 8 * 1024**2) // page}")
        return conn

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of store {self.path}: {exc}") from exc
        try:
            conn = self._connect()
            clean = self._check(conn)
        except sqlite3.DatabaseError as exc:
            corrupt = getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
            if not (corrupt or isinstance(exc, _CorruptError)):
                raise StoreError(f"cannot open store {self.path}: {exc}") from exc
            self._quarantine(str(exc))
            conn = self._connect()
            clean = True
        self._conn = conn
        try:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
            if columns and "expires" not in columns:  # a store written by an older version
                conn.execute("ALTER TABLE outbox ADD COLUMN expires REAL")
            conn.executescript(_SCHEMA)
            conn.execute(
                "CREATE INDEX IF NOT EXISTS outbox_expires ON outbox(expires)"
                " WHERE expires IS NOT NULL"
            )
            self._load_state(clean)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot initialise store {self.path}: {exc}") from exc
        log.info(
            "store %s open (sqlite %s): %d bytes buffered, cursors %s",
            self.path,
            sqlite3.sqlite_version,
            self._used,
            {s: {ln.label: c for ln, c in cur.items()} for s, cur in self._cursor.items()},
        )

    def _check(self, conn: sqlite3.Connection) -> bool:
        """Whether the last shutdown was clean; an unclean one costs a quick_check."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            return True
        row = conn.execute("SELECT value FROM meta WHERE key='clean'").fetchone()
        if row is not None and row[0] == "1":
            return True
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            conn.close()
            raise _CorruptError(f"quick_check: {result}")
        return False

    def _quarantine(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(Path(f"{target}{suffix}"))
        self.quarantined = target
        log.error(
            "store %s is corrupt (%s): moved it to %s for inspection and started a fresh store",
            self.path,
            reason,
            target,
        )

    def _load_state(self, clean: bool) -> None:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('clean', '0')")
        known = {r[0] for r in conn.execute("SELECT DISTINCT sink FROM cursors")}
        for gone in known - set(self.sinks):
            conn.execute("DELETE FROM cursors WHERE sink=?", (gone,))
            log.warning("sink %r is no longer configured: dropped its cursor", gone)
        for sink in self.sinks:
            for lane in Lane:
                conn.execute(
                    "INSERT OR IGNORE INTO cursors(sink, lane, last_id) VALUES(?, ?, 0)",
                    (sink, int(lane)),
                )
        conn.execute("COMMIT")
        for sink, lane, last in conn.execute("SELECT sink, lane, last_id FROM cursors"):
            self._cursor[sink][Lane(lane)] = last
            self._handed[sink][Lane(lane)] = last
        for lane, latest in conn.execute("SELECT lane, MAX(id) FROM outbox GROUP BY lane"):
            self._latest[Lane(lane)] = latest
        self._used = int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])
        for name, value in conn.execute("SELECT name, value FROM counters"):
            self._counters[name] = value
        if self.quarantined is not None:
            self._counters["quarantined"] += 1
        if not clean:
            log.warning("store %s: last shutdown was not clean; quick_check passed", self.path)

    def _close(self) -> None:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('clean', '1')")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is closed")
        return self._conn

    # -- writing ------------------------------------------------------------------------

    def add(self, rec: Record) -> None:
        """Queue a record; telemetry is committed within ``commit_interval``, others at once."""
        if len(self._queue) >= MAX_QUEUED and rec.lane is Lane.TELEMETRY:
            self._counters["dropped"] += 1
            return
        self._queue.append(rec)
        if rec.lane is not Lane.TELEMETRY:
            self._urgent.set()

    async def flush(self) -> None:
        """Commit every queued record now."""
        async with self._write_lock:
            if not self._queue:
                return
            batch, self._queue = self._queue, []
            try:
                latest, refused, _ = await self._run(self._insert, batch)
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: write failed: {exc}") from exc
            self._latest.update(latest)
            self._changed.set()
            if refused:
                # kept in memory, first in line: they go in as soon as a sink frees room
                self._queue[:0] = refused
                raise StoreFullError(
                    f"store {self.path} is full of undelivered alarms and events:"
                    f" {len(refused)} waiting in memory"
                )

    async def transact(
        self, work: Callable[[sqlite3.Connection], T], records: Sequence[Record] = ()
    ) -> T:
        """Run ``work`` on the database and insert ``records`` in the same transaction.

        For state that must change together with what is published about it (an alarm and
        its transition message): either both are committed or neither. ``work`` runs on the
        store's thread and must not block on anything but the database. Records that do not
        fit raise ``StoreFullError`` after ``work`` was committed; they are queued like ``add``.
        """
        async with self._write_lock:
            try:
                latest, refused, result = await self._run(self._insert, list(records), work)
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: write failed: {exc}") from exc
            self._latest.update(latest)
            self._changed.set()
        if refused:
            self._queue[:0] = refused
            raise StoreFullError(
                f"store {self.path} is full: {len(refused)} records wait in memory"
            )
        out: T = result
        return out

    async def purge_expired(self, now: float) -> int:
        """Delete rows whose retention ended by wall time ``now``, delivered or not."""
        where = "FROM outbox WHERE expires IS NOT NULL AND expires <= ?"

        def purge() -> tuple[int, int]:
            with self._immediate() as conn:
                found = conn.execute(f"SELECT COUNT(*), COALESCE(SUM(size), 0) {where}", (now,))
                n, size = found.fetchone()
                if n:
                    conn.execute(f"DELETE {where}", (now,))
                    self._count("purged", n)
            return int(n), int(size)

        async with self._write_lock:  # like every write: one at a time with its memory update
            counted: tuple[int, int] = await self._run(purge)
            purged, size = counted
            self._used -= size
        if purged:
            log.info("store %s: purged %d records past their retention", self.path, purged)
        return purged

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed if the block ends, rolled back if it raises."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:  # cancelled or failed, the transaction must not stay open
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def run_committer(self, interval: float, purge_every: float = 60.0) -> None:
        """Commit queued records every ``interval`` seconds, and at once for alarms and events.

        Every ``purge_every`` seconds, rows past their retention are purged as well.
        """
        full = False
        next_purge = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), interval)
            self._urgent.clear()
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + purge_every
                await self.purge_expired(time.time())
            try:
                await self.flush()
            except StoreFullError as exc:
                if not full:
                    log.error("%s", exc)
                full = True
            else:
                if full:
                    log.info("store %s has room again", self.path)
                full = False

    def _insert(
        self, batch: list[Record], also: Callable[[sqlite3.Connection], Any] | None = None
    ) -> tuple[dict[Lane, int], list[Record], Any]:
        """Insert what fits, in one transaction with ``also`` (run first, if given).

        Returns the new last id per lane, the records that did not fit, and what ``also``
        returned.
        """
        conn = self._db
        latest: dict[Lane, int] = {}
        refused: list[Record] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = also(conn) if also is not None else None
            seqs: dict[int, int] = dict(conn.execute("SELECT lane, next FROM lane_seq").fetchall())
            for rec in batch:
                size = _size(rec)
                limit = self.quota - (self.reserve if rec.lane is Lane.TELEMETRY else 0)
                if self._used + size > limit:
                    self._evict(self._used + size - limit, rec.ts, latest, seqs)
                if self._used + size > limit:
                    if rec.lane is Lane.TELEMETRY:
                        self._count("dropped", 1)
                    else:
                        refused.append(rec)
                    continue
                seq = seqs.get(int(rec.lane), 1)
                seqs[int(rec.lane)] = seq + 1
                cur = conn.execute(
                    "INSERT INTO outbox(lane, seq, topic, device, ts, synced, retain, body, size,"
                    " expires) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        int(rec.lane),
                        seq,
                        rec.topic,
                        rec.device,
                        rec.ts,
                        int(rec.clock_synced),
                        int(rec.retain),
                        rec.body,
                        size,
                        rec.expires,
                    ),
                )
                latest[rec.lane] = int(cur.lastrowid or 0)
                self._used += size
            conn.executemany(
                "INSERT OR REPLACE INTO lane_seq(lane, next) VALUES(?, ?)", seqs.items()
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._used = int(
                conn.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0]
            )
            raise
        return latest, refused, result

    def _count(self, name: str, n: int) -> None:
        self._counters[name] += n
        self._db.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def _evict(
        self, needed: int, now: float, latest: dict[Lane, int], seqs: dict[int, int]
    ) -> None:
        """Delete the oldest telemetry to free ``needed`` bytes (plus slack); report gaps."""
        conn = self._db
        target = max(needed, self.quota // 64)
        freed = 0
        spans: dict[str, list[str]] = {}
        counts: dict[str, int] = defaultdict(int)
        last_id = 0
        for rid, device, ts, size in conn.execute(
            "SELECT id, device, ts, size FROM outbox WHERE lane=? ORDER BY id LIMIT 4096",
            (int(Lane.TELEMETRY),),
        ).fetchall():
            if freed >= target:
                break
            freed += size
            last_id = rid
            stamp = iso(ts)
            span = spans.setdefault(device, [stamp, stamp])
            span[0], span[1] = min(span[0], stamp), max(span[1], stamp)
            counts[device] += 1
        if not last_id:
            return
        conn.execute("DELETE FROM outbox WHERE lane=? AND id<=?", (int(Lane.TELEMETRY), last_id))
        self._used -= freed
        self._count("evicted", sum(counts.values()))
        for device, (first, last) in spans.items():
            self._record_gap(device, first, last, counts[device], now, latest, seqs)

    def _record_gap(
        self,
        device: str,
        first: str,
        last: str,
        count: int,
        now: float,
        latest: dict[Lane, int],
        seqs: dict[int, int],
    ) -> None:
        """Fold the eviction into this device's newest gap row if no sink has taken it yet."""
        conn = self._db
        handed = max(
            (h[Lane.EVENT] for s, h in self._handed.items() if Lane.EVENT in self.lanes[s]),
            default=0,
        )
        row = conn.execute(
            "SELECT id, body, size FROM outbox WHERE lane=? AND topic='gap' AND device=? AND id>?"
            " ORDER BY id DESC LIMIT 1",
            (int(Lane.EVENT), device, handed),
        ).fetchone()
        if row is not None:
            old = json.loads(row[1])
            # ISO-8601 UTC stamps of one format sort as text
            body = gap_body(
                device, min(first, old["from"]), max(last, old["to"]), old["count"] + count
            )
            size = row[2] - len(row[1]) + len(body)
            conn.execute("UPDATE outbox SET body=?, size=? WHERE id=?", (body, size, row[0]))
            self._used += size - row[2]
            return
        seq = seqs.get(int(Lane.EVENT), 1)
        seqs[int(Lane.EVENT)] = seq + 1  # written back with the batch's other lanes
        rec = Record(Lane.EVENT, "gap", gap_body(device, first, last, count), now, False, device)
        size = _size(rec)
        cur = conn.execute(
            "INSERT INTO outbox(lane, seq, topic, device, ts, synced, retain, body, size)"
            " VALUES(?, ?, 'gap', ?, ?, 0, 0, ?, ?)",
            (int(Lane.EVENT), seq, device, now, rec.body, size),
        )
        latest[Lane.EVENT] = int(cur.lastrowid or 0)
        self._used += size

    # -- reading and confirming -----------------------------------------------------------

    async def fetch(
        self, sink: str, limit: int, lanes: Collection[Lane] | None = None
    ) -> list[Row]:
        """Up to ``limit`` rows this sink has not been handed yet, highest-priority lane first.

        ``lanes`` narrows the sink's own lanes further for this read.
        """
        handed = self._handed[sink]
        wanted = [
            ln
            for ln in self.lanes[sink]
            if (lanes is None or ln in lanes) and self._latest[ln] > handed[ln]
        ]
        if not wanted:
            return []
        rows: list[Row] = await self._run(self._select, dict(handed), wanted, limit)
        for row in rows:
            handed[row.lane] = max(handed[row.lane], row.id)
        return rows

    def _select(self, after: dict[Lane, int], lanes: list[Lane], limit: int) -> list[Row]:
        rows: list[Row] = []
        for lane in lanes:
            cur = self._db.execute(
                "SELECT id, seq, topic, device, ts, synced, retain, body FROM outbox"
                " WHERE lane=? AND id>? ORDER BY id LIMIT ?",
                (int(lane), after[lane], limit - len(rows)),
            )
            rows += [
                Row(r[0], lane, r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]), r[7]) for r in cur
            ]
            if len(rows) >= limit:
                break
        return rows

    def has_more_urgent(self, sink: str, lane: Lane) -> bool:
        """Whether a lane above ``lane`` holds rows this sink has not been handed yet."""
        handed = self._handed[sink]
        return any(self._latest[ln] > handed[ln] for ln in self.lanes[sink] if ln < lane)

    def backlog(self, sink: str) -> int:
        """Upper bound of rows this sink has not confirmed (ids are not dense)."""
        return sum(max(0, self._latest[ln] - self._cursor[sink][ln]) for ln in self.lanes[sink])

    def give_back(self, sink: str, rows: Sequence[Row]) -> None:
        """Undo handing out ``rows`` (the unsent tail of a fetch): they come again next fetch."""
        handed = self._handed[sink]
        for row in rows:
            handed[row.lane] = min(handed[row.lane], row.id - 1)

    def rewind(self, sink: str) -> None:
        """Hand out again everything the sink has not confirmed (after a reconnect)."""
        self._handed[sink] = dict(self._cursor[sink])

    async def wait_for_rows(self, sink: str) -> None:
        """Wait until there are rows this sink has not been handed yet."""
        while not any(self._latest[ln] > self._handed[sink][ln] for ln in self.lanes[sink]):
            self._changed.clear()
            await self._changed.wait()

    async def ack(self, sink: str, upto: dict[Lane, int]) -> None:
        """Confirm, per lane, every row up to and including the given id for ``sink``."""
        moves = {ln: i for ln, i in upto.items() if i > self._cursor[sink][ln]}
        if not moves:
            return
        async with self._write_lock:
            try:
                freed = await self._run(self._ack, sink, moves)
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: cursor update failed: {exc}") from exc
            self._cursor[sink].update(moves)
            self._used -= freed

    def _ack(self, sink: str, moves: dict[Lane, int]) -> int:
        freed = 0
        with self._immediate() as conn:
            for lane, last in moves.items():
                conn.execute(
                    "UPDATE cursors SET last_id=? WHERE sink=? AND lane=?", (last, sink, int(lane))
                )
                low = min(
                    last if s == sink else self._cursor[s][lane]
                    for s in self.sinks
                    if lane in self.lanes[s]
                )
                freed += int(
                    conn.execute(
                        "SELECT COALESCE(SUM(size), 0) FROM outbox WHERE lane=? AND id<=?",
                        (int(lane), low),
                    ).fetchone()[0]
                )
                conn.execute("DELETE FROM outbox WHERE lane=? AND id<=?", (int(lane), low))
        return freed

    def stats(self) -> StoreStats:
        """Current figures (from memory; no disk access)."""
        return StoreStats(
            rows={s: self.backlog(s) for s in self.sinks},
            used_bytes=self._used,
            quota_bytes=self.quota,
            evicted=self._counters["evicted"],
            dropped=self._counters["dropped"],
            quarantined=self._counters["quarantined"],
            purged=self._counters["purged"],
        )

    async def count_rows(self) -> dict[Lane, int]:
        """Rows per lane, counted on disk (for status and tests)."""

        def count() -> dict[Lane, int]:
            cur = self._db.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane")
            return {Lane(lane): n for lane, n in cur}

        result: dict[Lane, int] = await self._run(count)
        return result


def gap_body(device: str, first: str, last: str, count: int) -> str:
    """The body of a data-gap report: which device lost how many readings, and when."""
    return json.dumps(
        {"device": device, "reason": "quota", "count": count, "from": first, "to": last},
        separators=(",", ":"),
    )
