"""The store-and-forward buffer: SQLite in WAL mode, the one record of what is not delivered.

Invariants (each kept by doing every change inside one ``BEGIN IMMEDIATE ... COMMIT``):

1. A row stays in ``outbox`` until every sink's cursor for its lane has passed it.
2. A cursor ``(sink, lane) -> last_id`` only moves forward, and only over rows that sink has
   confirmed (sinks confirm contiguous prefixes of a lane, never a row with a hole before it).
3. ``seq`` is per lane, strictly increasing and never reused: ``lane_seq`` is updated in the
   transaction that inserts the rows. With the file's ``epoch`` (random, made with the file),
   ``(site_id, gateway_id, epoch, lane, seq)`` is the upstream dedup key.
4. Only telemetry is ever evicted, oldest first. Every eviction is counted and reported by a
   ``gap`` row in the event lane, written in the same transaction as the deletion.
5. Alarm and event rows may use the whole quota; telemetry only ``quota - reserve``.
6. A row with ``expires`` (personal data past its retention) is deleted once that wall time
   has passed, delivered or not, and counted as ``purged``: retention beats delivery.
7. What the store keeps in memory (newest id per lane, cursors, bytes used, counters) is
   changed on the store thread right after the COMMIT it mirrors (``gateway.store.ledger``).
   Cancelling a call only stops the caller waiting: a transaction handed to the store thread
   always runs to its COMMIT or ROLLBACK, and memory follows it, so a reload that cancels the
   alarm engine mid-``transact`` or a sink mid-``ack`` leaves memory and file in agreement.

Crash consistency: with WAL and ``synchronous=FULL`` a committed transaction survives a killed
process and, on storage that honours flushes, a power cut. Rows queued by ``add`` but not yet
committed (at most ``commit_interval`` of telemetry) are lost by a kill -9; that is the
documented window. Memory is rebuilt from the file at open, so a crash between a COMMIT and
its memory update loses nothing. A database that fails its check at start, or was written by a
newer release, is moved aside, never deleted, and a fresh one is opened (``gateway.store.db``),
so a bad file never becomes a crash loop. A full disk is a state, not an error: the quota is
checked against the free space at open, lowered when the disk fills below it (the oldest
telemetry makes room), and when nothing fits, alarms and events wait in memory while
``stats().problem`` says why (``gateway.store.ledger``, ``gateway.store.space``). Any other I/O
error while writing is fatal (``StoreError``): the daemon exits and systemd restarts it, so
nothing is acknowledged that was not written.

All SQLite calls run on one private thread; the event loop never blocks on the disk.
"""

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.core.errors import StoreError
from gateway.core.messages import Lane, Record
from gateway.core.snapshots import StoreSnapshot, StoreStats
from gateway.store import committer, space
from gateway.store.codec import encode
from gateway.store.cursors import Cursors
from gateway.store.db import corrupt, fresh, open_db, quarantine
from gateway.store.eviction import note_lost
from gateway.store.ledger import Encoded, Ledger
from gateway.store.model import Row, Stored, StoreFullError, replaced_record, rows
from gateway.store.schema import STORE, unclean
from gateway.store.settling import Settling
from gateway.store.thread import StoreThread

__all__ = ["MAX_QUEUED", "Row", "Store", "StoreFullError", "StoreStats"]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_QUEUED = 50_000  # rows waiting for a commit; beyond that telemetry is dropped and counted


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
        self.cursors = Cursors(sinks, lanes)
        # the lanes each sink takes (default: all); a row waits only for the sinks of its lane
        self.lanes = self.cursors.lanes
        self._pool = StoreThread()
        self._ledger: Ledger | None = None
        self._queue: list[Encoded] = []  # records with their bodies, encoded as they came
        self._queue_dropped = 0  # telemetry dropped by ``add`` (memory only)
        self._settling = Settling()  # what ``settled`` waits for
        self._changed = asyncio.Event()
        self._watchers: list[asyncio.Future[None]] = []  # ``next_change`` futures
        self._urgent = asyncio.Event()
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
        """Open (creating, checking, migrating or quarantining) the database at ``path``.

        ``lanes`` restricts a sink to some lanes (an InfluxDB sink takes only telemetry); rows of
        the other lanes neither wait for it nor are handed to it.
        """
        store = cls(path, quota, reserve, sinks, lanes)
        try:
            await store._run(store._open)
        except BaseException:
            store._pool.shutdown(wait=True)
            raise
        if store.quarantined is not None:
            store.add(await store._run(replaced_record, store.quarantined))
            await store.flush()  # the first row of the fresh file
        return store

    async def close(self) -> None:
        """Commit what is queued, mark a clean shutdown and release the file.

        Alarms and events still waiting in memory (a full disk) are lost: logged at ERROR with
        their number. After a failed write (an I/O error) the file is released unmarked.
        """
        try:
            if self._ledger is not None:
                try:
                    if not self._ledger.failed:
                        await self.flush()
                except StoreFullError as exc:
                    log.error("store %s: closing with messages not written: %s", self.path, exc)
                await self._run(self._close)
        finally:
            self._pool.shutdown(wait=True)

    def _open(self) -> None:
        # a hard ceiling far above the logical quota: the byte accounting keeps the file well
        # under it; hitting it means a bug, reported as SQLITE_FULL instead of a full disk
        opened = open_db(self.path, STORE, needs_check=unclean, max_bytes=self._max_bytes)
        self.quota, self.reserve = space.effective(self.path, self.quota, self.reserve)
        self.quarantined = opened.quarantined
        try:
            ledger = self._load(opened.conn, opened.quarantined is not None)
        except sqlite3.DatabaseError as exc:
            if not corrupt(exc):
                raise StoreError(f"cannot initialise store {self.path}: {exc}") from exc
            # a file marked clean skips quick_check: its damage shows on the first reads
            self.quarantined = quarantine(self.path, STORE.label, exc)
            self.cursors = Cursors(self.cursors.sinks, self.cursors.lanes)
            conn = fresh(self.path, STORE, self._max_bytes)
            try:
                ledger = self._load(conn, True)
            except sqlite3.Error as again:
                raise StoreError(f"cannot initialise store {self.path}: {again}") from again
        self._ledger = ledger
        if opened.checked:
            log.warning("store %s: last shutdown was not clean; quick_check passed", self.path)
        log.info(
            "store %s open (sqlite %s): %d bytes buffered, cursors %s",
            self.path,
            sqlite3.sqlite_version,
            ledger.used,
            {
                s: {ln.label: c for ln, c in cur.items()}
                for s, cur in self.cursors.confirmed.items()
            },
        )

    @property
    def _max_bytes(self) -> int:
        return 2 * self.quota + 8 * 1024**2

    def _load(self, conn: sqlite3.Connection, quarantined: bool) -> Ledger:
        """The ledger of the open file ``conn``; closes ``conn`` if its reads fail."""
        space.tune(conn, self.quota)
        ledger = Ledger(conn, self.cursors, self.quota, self.reserve)
        ledger.room = functools.partial(space.room, self.path)
        try:
            ledger.load(quarantined)
        except BaseException:
            conn.close()
            raise
        return ledger

    def _close(self) -> None:
        self.ledger.close()
        self._ledger = None

    @property
    def epoch(self) -> str:
        """This file's random epoch (16 hex digits), made with it and never changed.

        A fresh file (a first start, or one replacing a quarantined file) gets a new one, so the
        platform's dedup key ``(site, gateway, epoch, lane, seq)`` never repeats across stores.
        """
        return self.ledger.epoch

    @property
    def ledger(self) -> Ledger:
        """The open file's transactions (raises ``StoreError`` once closed)."""
        if self._ledger is None:
            raise StoreError("store is closed")
        return self._ledger

    async def _run(self, fn: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        """Run ``fn`` on the store thread; cancelling the caller never cancels ``fn``.

        Once submitted, ``fn`` runs to its end (invariant 7). If the caller is cancelled
        meanwhile, sinks are still woken for what it committed, and an error nobody awaits
        any more is logged. ``urgent`` work (alarms) goes before queued normal work.
        """
        job = asyncio.wrap_future(self._pool.submit(fn, *args, urgent=urgent))
        job.add_done_callback(self._wake)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(self._orphaned)
            raise

    def _wake(self, _job: "asyncio.Future[Any]") -> None:
        self._changed.set()  # whatever it committed is in memory already
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)

    def _orphaned(self, job: "asyncio.Future[Any]") -> None:
        """Report the failure of a transaction whose caller was cancelled (nobody else will)."""
        if not job.cancelled() and job.exception() is not None:
            log.error(
                "store %s: a write failed after its caller left: %s", self.path, job.exception()
            )

    async def _write(self, fn: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        try:
            return await self._run(fn, *args, urgent=urgent)
        except sqlite3.Error as exc:
            self.ledger.failed = str(exc)  # no clean-shutdown mark on this file any more
            raise StoreError(f"store {self.path}: write failed: {exc}") from exc

    # -- writing ------------------------------------------------------------------------

    def add(self, rec: Record) -> None:
        """Queue a record; telemetry is committed within ``commit_interval``, others at once."""
        if len(self._queue) >= MAX_QUEUED and rec.lane is Lane.TELEMETRY:
            self._queue_dropped += 1
            with self.ledger.lock:  # reported in a gap by the next commit
                note_lost(self.ledger.lost, rec.device, rec.ts)
            return
        self._queue.append((rec, encode(rec)))
        self._settling.added += 1
        if rec.lane is not Lane.TELEMETRY:
            self._urgent.set()

    async def settled(self) -> None:
        """Return once every record queued by ``add`` before this call is committed (on a full
        disk: taken by a commit that left it waiting in memory, see ``flush``)."""
        await self._settling.wait(self.flush)

    async def flush(self) -> None:
        """Commit every queued record now (and alarms and events that waited for room)."""
        ledger = self.ledger
        if not self._queue and not ledger.refused:
            return
        batch, self._queue = self._queue, []
        urgent = any(rec.lane is Lane.ALARM for rec, _ in batch)
        with self._settling.flushing(len(batch)):
            refused, _ = await self._write(ledger.insert, batch, urgent=urgent)
        if refused:
            raise StoreFullError(
                f"store {self.path} is full of undelivered alarms and events:"
                f" {refused} waiting in memory"
            )

    async def transact(
        self, work: Callable[[sqlite3.Connection], T], records: Sequence[Record] = ()
    ) -> T:
        """Run ``work`` on the database and insert ``records`` in the same transaction.

        For state that must change together with what is published about it (an alarm and
        its transition message): either both are committed or neither. ``work`` runs on the
        store's thread and must not block on anything but the database. Records that do not
        fit raise ``StoreFullError`` after ``work`` was committed; they wait in memory and go
        in first once a sink frees room. A transaction with alarm records runs before the
        store thread's queued normal work (``gateway.store.thread``).
        """
        urgent = any(rec.lane is Lane.ALARM for rec in records)  # overtakes queued telemetry
        refused, result = await self._write(
            self.ledger.insert, Ledger.encoded(records), work, urgent=urgent
        )
        if refused:
            raise StoreFullError(f"store {self.path} is full: {refused} records wait in memory")
        out: T = result
        return out

    async def purge_expired(self, now: float) -> int:
        """Delete rows whose retention ended by wall time ``now``, delivered or not."""
        purged = await self._write(self.ledger.purge, now)
        if purged:
            log.info("store %s: purged %d records past their retention", self.path, purged)
        return purged

    async def run_committer(self, interval: float, purge_every: float = 60.0) -> None:
        """Commit queued records every ``interval`` seconds, and at once for alarms and events;
        purge rows past their retention every ``purge_every`` s (``gateway.store.committer``)."""
        await committer.run(self, self._urgent, interval, purge_every)

    # -- reading and confirming -----------------------------------------------------------

    async def fetch(
        self, sink: str, limit: int, lanes: Collection[Lane] | None = None
    ) -> list[Row]:
        """Up to ``limit`` rows this sink has not been handed yet, highest-priority lane first.

        ``lanes`` narrows the sink's own lanes further for this read. Rows of a cancelled
        fetch are given back, so they come again.
        """
        ledger = self.ledger
        with ledger.lock:
            wanted = self.cursors.waiting(sink, ledger.latest, lanes)
        if not wanted:
            return []
        job = asyncio.wrap_future(self._pool.submit(ledger.select, sink, wanted, limit))
        try:
            return rows(await asyncio.shield(job))
        except asyncio.CancelledError:
            job.add_done_callback(lambda j: self._give_back_job(sink, j))
            raise

    def _give_back_job(self, sink: str, job: "asyncio.Future[list[Stored]]") -> None:
        if not job.cancelled() and job.exception() is None:
            self.give_back(sink, rows(job.result()))

    def has_more_urgent(self, sink: str, lane: Lane) -> bool:
        """Whether a lane above ``lane`` holds rows this sink has not been handed yet."""
        return self.cursors.more_urgent(sink, self.ledger.latest, lane)

    def backlog(self, sink: str) -> int:
        """Upper bound of rows this sink has not confirmed (ids are not dense)."""
        ledger = self.ledger
        with ledger.lock:
            return self.cursors.backlog(sink, ledger.latest)

    def give_back(self, sink: str, rows: Sequence[Row]) -> None:
        """Undo handing out ``rows`` (the unsent tail of a fetch): they come again next fetch."""
        with self.ledger.lock:
            self.cursors.give_back(sink, [(r.lane, r.id) for r in rows])

    def rewind(self, sink: str) -> None:
        """Hand out again everything the sink has not confirmed (after a reconnect)."""
        with self.ledger.lock:
            self.cursors.rewind(sink)

    async def wait_for_rows(self, sink: str) -> None:
        """Wait until there are rows this sink has not been handed yet."""
        ledger = self.ledger
        while True:
            with ledger.lock:
                if self.cursors.waiting(sink, ledger.latest):
                    return
            self._changed.clear()
            await self._changed.wait()

    def next_change(self) -> "asyncio.Future[None]":
        """A future (not a task) that completes at the next commit after this call: a commit
        between a check and awaiting it is not missed. Cancel it to stop watching."""
        fut = asyncio.get_running_loop().create_future()
        self._watchers = [f for f in self._watchers if not f.done()]
        self._watchers.append(fut)
        return fut

    async def ack(self, sink: str, upto: dict[Lane, int]) -> None:
        """Confirm, per lane, every row up to and including the given id for ``sink``."""
        ledger = self.ledger
        with ledger.lock:
            if not self.cursors.moves(sink, upto):
                return
        try:
            await self._run(ledger.ack, sink, dict(upto))
        except sqlite3.Error as exc:
            ledger.failed = str(exc)
            raise StoreError(f"store {self.path}: cursor update failed: {exc}") from exc

    def snapshot(self) -> StoreSnapshot:
        """What health and metrics read of the store (memory only, no disk access)."""
        return StoreSnapshot(self.stats(), self.path)

    def stats(self) -> StoreStats:
        """Current figures (from memory; no disk access)."""
        return self.ledger.stats(self._queue_dropped)

    async def count_rows(self) -> dict[Lane, int]:
        """Rows per lane, counted on disk (for status and tests)."""
        return await self._run(self.ledger.count_rows)
