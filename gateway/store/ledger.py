"""The store thread's side: every transaction on the outbox, and the memory that mirrors it.

Invariants (on top of those in ``gateway.store.outbox``):

1. Every method runs on the store's one thread, one at a time, in the order they were
   submitted. Each does its work inside one ``BEGIN IMMEDIATE ... COMMIT``.
2. Memory mirrors the file: ``used`` (bytes of all rows), ``latest`` (newest id per lane),
   the confirmed cursors and the persisted counters change only right after the COMMIT that
   wrote them, in the same method, under ``lock``. A transaction that raises is rolled back
   and changes nothing. So whatever the event loop cancels, and whenever, memory and file
   agree once the method returns: the loop can stop *waiting* for a transaction, never stop
   it halfway.
3. Readers on the event loop take ``lock``; it is never held across disk I/O.
4. Quota: rows are charged ``size`` bytes; telemetry may fill ``quota - reserve``, alarms and
   events the whole quota. Telemetry that does not fit evicts the oldest telemetry first and
   every eviction is reported by a ``gap`` row in the event lane, written in the same
   transaction; an alarm or event that does not fit even then is kept in ``refused`` (in
   memory, first in line for the next insert), never dropped.
"""

import contextlib
import logging
import secrets
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from gateway.core.messages import Lane, Record
from gateway.core.snapshots import StoreStats
from gateway.store.codec import encode
from gateway.store.cursors import Cursors
from gateway.store.db import full, rollback
from gateway.store.eviction import Lost, evict, merge_lost, note_lost, report_lost
from gateway.store.model import INSERT, Stored, size
from gateway.store.txn import Txn

Work = Callable[[sqlite3.Connection], Any]  # what runs first in a write transaction
Encoded = tuple[Record, str]  # a record with its ``body`` text, encoded before it reaches here
log = logging.getLogger(__name__)


class Ledger:
    """Transactions on one open store file, and the in-memory mirror of their effects."""

    def __init__(
        self, conn: sqlite3.Connection, cursors: Cursors, quota: int, reserve: int
    ) -> None:
        self.conn = conn
        self.cursors = cursors
        self.quota = quota
        self.reserve = reserve
        self.lock = threading.Lock()
        self.used = 0
        self.latest: dict[Lane, int] = dict.fromkeys(Lane, 0)
        self.counters: dict[str, int] = defaultdict(int)
        self.refused: list[Encoded] = []  # alarms and events waiting for room (invariant 4)
        self.epoch = ""  # the file's random epoch, from ``load`` on
        self.refused_work: list[Work] = []  # alarm-table writes waiting with ``refused``
        # telemetry dropped before it had a row (no room, or the caller's queue overflowed):
        # folded into gap reports by the next insert that commits; under ``lock``
        self.lost: Lost = {}
        self.problem = ""  # why the last write did not fit on the disk; "" when writable
        self.failed = ""  # the I/O error a write failed with: the file is not marked clean
        self.ceiling = quota  # the quota at open; ``_shrink`` lowers ``quota`` below it
        self.room: Callable[[int], int] | None = None  # the quota the disk holds now, up to

    def load(self, quarantined: bool) -> None:
        """Mark the file in use, settle the cursors and read the state into memory."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('clean', '0')")
            if quarantined:
                Txn(self).count("quarantined", 1)  # memory reads it back below
            with self.lock:
                self.cursors.load(conn)
            # made with the file, kept for its life: the platform's dedup key includes it
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('epoch', ?)", (secrets.token_hex(8),)
            )
            (self.epoch,) = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
            conn.execute("COMMIT")  # inside: a COMMIT the full disk refuses is rolled back too
        except BaseException:
            rollback(conn)
            raise
        with self.lock:
            for lane, latest in conn.execute("SELECT lane, MAX(id) FROM outbox GROUP BY lane"):
                self.latest[Lane(lane)] = latest
                self.cursors.sent[Lane(lane)] = latest  # sent before a crash, maybe
            self.used = int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])
            for name, value in conn.execute("SELECT name, value FROM counters"):
                self.counters[name] = value

    def close(self) -> None:
        """Mark a clean shutdown, checkpoint and release the file.

        On a full disk the mark may not fit, and after a failed write (``failed``: an I/O
        error) it is not tried: the file is then closed unmarked (the next start runs
        ``quick_check`` on it), never left open or raised about.
        """
        conn = self.conn
        try:
            if self.failed:
                raise sqlite3.OperationalError(f"a write failed: {self.failed}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('clean', '1')")
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            rollback(conn)
            level = logging.WARNING if full(exc) else logging.ERROR
            log.log(level, "store: closed without the clean-shutdown mark: %s", exc)
        finally:
            conn.close()

    # -- writing ----------------------------------------------------------------------------

    def insert(
        self, batch: Sequence[Encoded], also: Callable[[sqlite3.Connection], Any] | None = None
    ) -> tuple[int, Any]:
        """Insert what fits of ``refused`` + ``batch``, in one transaction with ``also``.

        ``batch`` holds records with their bodies (``encoded``): encoding happens before, on
        the caller's side, so the write transaction (which an alarm's commit may be waiting
        behind) holds the store thread only for SQLite's own work. ``also`` runs first.
        Returns how many records wait in ``refused`` and what ``also`` returned.

        A full disk (SQLITE_FULL) is a state, not an error: the quota is lowered below what
        is stored now, so the oldest telemetry is evicted (counted, gap-reported) to make room,
        and the insert is tried again. If even that does not fit, the telemetry of the batch
        is dropped (counted), alarms and events wait in ``refused`` with ``also`` (in memory;
        they go in first once there is room) and ``problem`` says why until a write succeeds.
        """
        works = [*self.refused_work, *([also] if also is not None else [])]
        if self.quota < self.ceiling and self.room is not None:  # lowered on a full disk
            self.quota = max(self.quota, self.room(self.ceiling))
        try:
            result = self._insert(batch, works)
        except sqlite3.OperationalError as exc:
            if not full(exc):
                raise
            self._shrink(str(exc))
            try:
                result = self._insert(batch, works)
            except sqlite3.OperationalError as again:
                if not full(again):
                    raise
                return self._refuse(batch, works, str(again)), None
        self.refused_work = []
        if self.problem:
            log.warning("store: writable again (%s)", self.problem)
            self.problem = ""
        return len(self.refused), result

    def _shrink(self, why: str) -> None:
        """The disk is full below the quota: make the quota what the disk holds now."""
        lowered = int(self.used * 0.9)
        if lowered < self.quota:
            self.reserve = min(self.reserve, lowered // 4)
            log.warning(
                "store: the disk is full (%s) at %d bytes buffered: quota lowered from %d to %d"
                " bytes; the oldest telemetry makes room",
                why,
                self.used,
                self.quota,
                lowered,
            )
            self.quota = lowered
        with contextlib.suppress(sqlite3.Error):  # moves the WAL into the file, if it can
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _refuse(self, batch: Sequence[Encoded], works: list[Work], why: str) -> int:
        """Nothing fits: keep alarms, events and ``works`` in memory, count the telemetry."""
        kept = [e for e in [*self.refused, *batch] if e[0].lane is not Lane.TELEMETRY]
        lost = [rec for rec, _ in batch if rec.lane is Lane.TELEMETRY]
        with self.lock:
            self.counters["dropped"] += len(lost)  # in memory only: the disk takes nothing now
            for rec in lost:  # reported in a gap once the disk takes a row again
                note_lost(self.lost, rec.device, rec.ts)
        self.refused, self.refused_work = kept, works
        if not self.problem:
            log.error(
                "store: not writable: %s; %d alarm and event messages wait in memory",
                why,
                len(kept),
            )
        self.problem = f"disk full ({why})"
        return len(kept)

    def _insert(self, batch: Sequence[Encoded], works: list[Work]) -> Any:
        txn = Txn(self)
        conn = self.conn
        pending = [*self.refused, *batch]
        refused: list[Encoded] = []
        with self.lock:
            lost, self.lost = self.lost, {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = None
            for work in works:
                result = work(conn)
            for rec, body in pending:
                charge = size(rec, body)
                limit = self.quota - (self.reserve if rec.lane is Lane.TELEMETRY else 0)
                if txn.used + charge > limit:
                    evict(self, txn, txn.used + charge - limit, rec.ts)
                if txn.used + charge > limit:
                    if rec.lane is Lane.TELEMETRY:
                        txn.count("dropped", 1)
                        note_lost(lost, rec.device, rec.ts)
                    else:
                        refused.append((rec, body))
                    continue
                row = (rec.topic, rec.device, rec.ts, int(rec.clock_synced), int(rec.retain))
                cur = conn.execute(
                    INSERT,
                    (int(rec.lane), txn.next_seq(rec.lane), *row, body, charge, rec.expires),
                )
                txn.latest[rec.lane] = int(cur.lastrowid or 0)
                txn.used += charge
            if lost:
                report_lost(self, txn, lost)
            txn.write_back()
            conn.execute("COMMIT")  # inside: a COMMIT the full disk refuses is rolled back too
        except BaseException:
            rollback(conn)
            with self.lock:
                merge_lost(self.lost, lost)
            raise
        txn.apply()
        self.refused = refused
        return result

    @staticmethod
    def encoded(records: Sequence[Record]) -> list[Encoded]:
        """``records`` with their bodies, ready for ``insert``."""
        return [(rec, encode(rec)) for rec in records]

    def purge(self, now: float) -> int:
        """Delete rows whose retention ended by wall time ``now``; how many went."""
        where = "FROM outbox WHERE expires IS NOT NULL AND expires <= ?"
        txn = Txn(self)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            n, freed = conn.execute(
                f"SELECT COUNT(*), COALESCE(SUM(size), 0) {where}", (now,)
            ).fetchone()
            if n:
                conn.execute(f"DELETE {where}", (now,))
                txn.count("purged", n)
                txn.used -= freed
            conn.execute("COMMIT")  # inside: a COMMIT the full disk refuses is rolled back too
        except BaseException:
            rollback(conn)
            raise
        txn.apply()
        return int(n)

    def ack(self, sink: str, upto: dict[Lane, int]) -> None:
        """Move ``sink``'s confirmed cursors to ``upto``; delete rows every sink confirmed.

        On a full disk the WAL is checkpointed and the ack tried once more; if it still does
        not fit, the cursors stay where they were (the rows go out again later: duplicates,
        never a loss) and the next ack carries this one's moves too.
        """
        try:
            self._ack(sink, upto)
        except sqlite3.OperationalError as exc:
            if not full(exc):
                raise
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try:
                self._ack(sink, upto)
            except sqlite3.OperationalError as again:
                if not full(again):
                    raise
                log.warning("store: an ack did not fit on the disk; kept for the next one")

    def _ack(self, sink: str, upto: dict[Lane, int]) -> None:
        with self.lock:
            moves = self.cursors.moves(sink, upto)
            lows = {lane: self.cursors.low(lane, sink, last) for lane, last in moves.items()}
        if not moves:
            return
        txn = Txn(self)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for lane, last in moves.items():
                conn.execute(
                    "UPDATE cursors SET last_id=? WHERE sink=? AND lane=?", (last, sink, int(lane))
                )
                where = "FROM outbox WHERE lane=? AND id<=?"
                args = (int(lane), lows[lane])
                txn.used -= int(
                    conn.execute(f"SELECT COALESCE(SUM(size), 0) {where}", args).fetchone()[0]
                )
                conn.execute(f"DELETE {where}", args)
            conn.execute("COMMIT")  # inside: a COMMIT the full disk refuses is rolled back too
        except BaseException:
            rollback(conn)
            raise
        with self.lock:
            self.cursors.confirm(sink, moves)
        txn.apply()

    # -- reading ----------------------------------------------------------------------------

    def select(self, sink: str, lanes: Sequence[Lane], limit: int) -> list[Stored]:
        """Up to ``limit`` rows of ``lanes`` not handed to ``sink`` yet; now handed to it.

        The rows come back as stored; ``rows`` decodes them on the caller's thread, so the
        store thread spends its time in SQLite (which lets the event loop run), not in Python.
        """
        with self.lock:
            after = dict(self.cursors.handed[sink])
        stored: list[Stored] = []
        for lane in lanes:
            stored += self.conn.execute(
                "SELECT id, lane, seq, topic, device, ts, synced, retain, body FROM outbox"
                " WHERE lane=? AND id>? ORDER BY id LIMIT ?",
                (int(lane), after[lane], limit - len(stored)),
            ).fetchall()
            if len(stored) >= limit:
                break
        with self.lock:
            self.cursors.hand_out(sink, [(Lane(r[1]), r[0]) for r in stored])
        return stored

    def waiting(self, lane: Lane) -> list[Record]:
        """Records of ``lane`` that wait in memory for room (a full disk), oldest first.

        Read on the event loop while the store thread may replace ``refused``: the list is
        replaced, never changed in place, so the copy taken here is one consistent state.
        """
        return [rec for rec, _ in self.refused if rec.lane is lane]

    def stats(self, queue_dropped: int = 0) -> StoreStats:
        """The figures of status and metrics, from memory; ``queue_dropped``: the caller's own."""
        with self.lock:
            return StoreStats(
                rows={s: self.cursors.backlog(s, self.latest) for s in self.cursors.sinks},
                used_bytes=self.used,
                quota_bytes=self.quota,
                evicted=self.counters["evicted"],
                dropped=self.counters["dropped"] + queue_dropped,
                quarantined=self.counters["quarantined"],
                purged=self.counters["purged"],
                problem=self.problem,
            )

    def count_rows(self) -> dict[Lane, int]:
        """Rows per lane, counted on disk."""
        cur = self.conn.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane")
        return {Lane(lane): n for lane, n in cur}
