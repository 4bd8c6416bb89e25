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

import json
import secrets
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from gateway.core.contract import iso
from gateway.core.messages import Json, Lane, Record
from gateway.store.codec import decode_fields, encode
from gateway.store.cursors import Cursors
from gateway.store.model import Row, gap_fields, size

Encoded = tuple[Record, str]  # a record with its ``body`` text, encoded before it reaches here
_NONE: Mapping[str, Json] = MappingProxyType({})  # the fields of every telemetry row
Stored = tuple[int, int, int, str, str, float, int, int, str]  # a row as SELECTed by ``select``
_TELEMETRY = int(Lane.TELEMETRY)
_LANES = tuple(Lane)  # Lane(n) is _LANES[n], without the enum call
_INSERT = (
    "INSERT INTO outbox(lane, seq, topic, device, ts, synced, retain, body, size, expires)"
    " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


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

    def load(self, quarantined: bool) -> None:
        """Mark the file in use, settle the cursors and read the state into memory."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('clean', '0')")
            if quarantined:
                _Txn(self).count("quarantined", 1)  # memory reads it back below
            with self.lock:
                self.cursors.load(conn)
            # made with the file, kept for its life: the platform's dedup key includes it
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('epoch', ?)", (secrets.token_hex(8),)
            )
            (self.epoch,) = conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        with self.lock:
            for lane, latest in conn.execute("SELECT lane, MAX(id) FROM outbox GROUP BY lane"):
                self.latest[Lane(lane)] = latest
            self.used = int(conn.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])
            for name, value in conn.execute("SELECT name, value FROM counters"):
                self.counters[name] = value

    def close(self) -> None:
        """Mark a clean shutdown, checkpoint and release the file."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('clean', '1')")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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
        """
        txn = _Txn(self)
        conn = self.conn
        pending = [*self.refused, *batch]
        refused: list[Encoded] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = also(conn) if also is not None else None
            for rec, body in pending:
                charge = size(rec, body)
                limit = self.quota - (self.reserve if rec.lane is Lane.TELEMETRY else 0)
                if txn.used + charge > limit:
                    self._evict(txn, txn.used + charge - limit, rec.ts)
                if txn.used + charge > limit:
                    if rec.lane is Lane.TELEMETRY:
                        txn.count("dropped", 1)
                    else:
                        refused.append((rec, body))
                    continue
                row = (rec.topic, rec.device, rec.ts, int(rec.clock_synced), int(rec.retain))
                cur = conn.execute(
                    _INSERT,
                    (int(rec.lane), txn.next_seq(rec.lane), *row, body, charge, rec.expires),
                )
                txn.latest[rec.lane] = int(cur.lastrowid or 0)
                txn.used += charge
            txn.write_back()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        txn.apply()
        self.refused = refused
        return len(refused), result

    @staticmethod
    def encoded(records: Sequence[Record]) -> list[Encoded]:
        """``records`` with their bodies, ready for ``insert``."""
        return [(rec, encode(rec)) for rec in records]

    def _evict(self, txn: "_Txn", needed: int, now: float) -> None:
        """Delete the oldest telemetry to free ``needed`` bytes (plus slack); report gaps."""
        conn = self.conn
        target = max(needed, self.quota // 64)
        freed = 0
        spans: dict[str, list[str]] = {}
        counts: dict[str, int] = defaultdict(int)
        last_id = 0
        for rid, device, ts, charge in conn.execute(
            "SELECT id, device, ts, size FROM outbox WHERE lane=? ORDER BY id LIMIT 4096",
            (int(Lane.TELEMETRY),),
        ).fetchall():
            if freed >= target:
                break
            freed += charge
            last_id = rid
            stamp = iso(ts)
            span = spans.setdefault(device, [stamp, stamp])
            span[0], span[1] = min(span[0], stamp), max(span[1], stamp)
            counts[device] += 1
        if not last_id:
            return
        conn.execute("DELETE FROM outbox WHERE lane=? AND id<=?", (int(Lane.TELEMETRY), last_id))
        txn.used -= freed
        txn.count("evicted", sum(counts.values()))
        for device, (first, last) in spans.items():
            self._record_gap(txn, device, first, last, counts[device], now)

    def _record_gap(
        self, txn: "_Txn", device: str, first: str, last: str, count: int, now: float
    ) -> None:
        """Fold the eviction into this device's newest gap row if no sink has taken it yet."""
        conn = self.conn
        with self.lock:
            handed = self.cursors.newest_handed(Lane.EVENT)
        row = conn.execute(
            "SELECT id, body, size FROM outbox WHERE lane=? AND topic='gap' AND device=? AND id>?"
            " ORDER BY id DESC LIMIT 1",
            (int(Lane.EVENT), device, handed),
        ).fetchone()
        if row is not None:
            old = json.loads(row[1])
            # ISO-8601 UTC stamps of one format sort as text
            fields = gap_fields(
                device, min(first, old["from"]), max(last, old["to"]), old["count"] + count
            )
            body = encode(Record(Lane.EVENT, "gap", now, False, device, fields=fields))
            charge = row[2] - len(row[1]) + len(body)
            conn.execute("UPDATE outbox SET body=?, size=? WHERE id=?", (body, charge, row[0]))
            txn.used += charge - row[2]
            return
        fields = gap_fields(device, first, last, count)
        rec = Record(Lane.EVENT, "gap", now, False, device, fields=fields)
        body = encode(rec)
        charge = size(rec, body)
        cur = conn.execute(
            _INSERT,
            (
                int(Lane.EVENT),
                txn.next_seq(Lane.EVENT),
                "gap",
                device,
                now,
                0,
                0,
                body,
                charge,
                None,
            ),
        )
        txn.latest[Lane.EVENT] = int(cur.lastrowid or 0)
        txn.used += charge

    def purge(self, now: float) -> int:
        """Delete rows whose retention ended by wall time ``now``; how many went."""
        where = "FROM outbox WHERE expires IS NOT NULL AND expires <= ?"
        txn = _Txn(self)
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
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        txn.apply()
        return int(n)

    def ack(self, sink: str, upto: dict[Lane, int]) -> None:
        """Move ``sink``'s confirmed cursors to ``upto``; delete rows every sink confirmed."""
        with self.lock:
            moves = self.cursors.moves(sink, upto)
            lows = {lane: self.cursors.low(lane, sink, last) for lane, last in moves.items()}
        if not moves:
            return
        txn = _Txn(self)
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
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
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
            self.cursors.hand_out(sink, [(_LANES[r[1]], r[0]) for r in stored])
        return stored

    def count_rows(self) -> dict[Lane, int]:
        """Rows per lane, counted on disk."""
        cur = self.conn.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane")
        return {Lane(lane): n for lane, n in cur}


class _Txn:
    """The memory changes of one transaction, applied only once it committed (invariant 2)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.used = ledger.used
        self.latest: dict[Lane, int] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self._seqs: dict[int, int] | None = None

    def next_seq(self, lane: Lane) -> int:
        """The next seq of ``lane`` (invariant 3 of the outbox), written back by ``write_back``."""
        if self._seqs is None:
            self._seqs = dict(
                self.ledger.conn.execute("SELECT lane, next FROM lane_seq").fetchall()
            )
        seq = self._seqs.get(int(lane), 1)
        self._seqs[int(lane)] = seq + 1
        return seq

    def count(self, name: str, n: int) -> None:
        """Add ``n`` to a persisted counter in this transaction."""
        self.ledger.conn.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )
        self.counts[name] += n

    def write_back(self) -> None:
        """Store the advanced seqs, still inside the transaction."""
        if self._seqs is not None:
            self.ledger.conn.executemany(
                "INSERT OR REPLACE INTO lane_seq(lane, next) VALUES(?, ?)", self._seqs.items()
            )

    def apply(self) -> None:
        """The transaction committed: make memory follow it."""
        ledger = self.ledger
        with ledger.lock:
            ledger.used = self.used
            ledger.latest.update(self.latest)
            for name, n in self.counts.items():
                ledger.counters[name] += n


def rows(stored: Sequence[Stored]) -> list[Row]:
    """Typed rows of ``select``'s result: fields decoded, points as stored (``Row.points``)."""
    fields = decode_fields
    return [
        Row(i, _LANES[ln], seq, topic, device, ts, bool(synced), bool(retain), _NONE, body)
        if ln == _TELEMETRY
        else Row(
            i, _LANES[ln], seq, topic, device, ts, bool(synced), bool(retain), fields(body), ""
        )
        for i, ln, seq, topic, device, ts, synced, retain, body in stored
    ]
