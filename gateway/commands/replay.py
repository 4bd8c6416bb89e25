"""The replay cache: every command the gateway accepted, kept on disk until it can no longer pass.

One SQLite file (WAL, ``synchronous=FULL``) with one row per accepted command: nonce, command
id, name, args, ``exp``, state (``accepted`` or ``done``) and, once done, the outcome (JSON).

Invariants:

1. A nonce, and a command id, is claimed at most once. ``claim`` commits the row *before* the
   caller executes the command, and returns False for a nonce or id already present, so a
   command runs at most once across duplicate deliveries (MQTT QoS 1 DUP), replays and
   restarts.
2. A row is dropped only when it is ``done`` and its command can no longer pass verification
   (``exp + max_skew <= now``): ``prune`` keeps the file bounded by the commands of one
   validity window. A row still ``accepted`` is never pruned: it is the only record of an
   interrupted execution, until ``finish`` records how that was reported.
3. The floor: ``claim`` refuses every command with ``exp <= floor``, as if seen. ``prune`` raises
   the floor to ``now - max_skew``, so a wall clock stepped back cannot make a pruned command
   new again. A quarantined file raises it to ``now + max_skew + max_lifetime``: whatever the
   lost file held was issued before ``now + max_skew`` and expires before that floor. A fresh
   file (first start) has no floor.

At most once, never twice: a crash between ``claim`` and ``finish`` leaves the row ``accepted``.
``interrupted()`` lists such rows at the next start, for the caller to report on
``cmd-result/<id>`` and then ``finish`` with that report. They are never re-run: the relay may
already have switched before the crash, and unlocking a door twice, or late, is worse than
reporting that it may not have happened.

Crash consistency: each change is one ``BEGIN IMMEDIATE ... COMMIT``; with WAL and
``synchronous=FULL`` a committed claim survives a killed process and a power cut on storage
that honours flushes. A file that fails ``quick_check`` (or is not a database) at open is moved
aside with a log line, never deleted, and a fresh one is opened, so corruption never becomes a
crash loop. Any other SQLite error raises ``StoreError``: a claim that could not be recorded
must not be executed.

Synchronous by choice: every call is one short transaction on a small file (a write costs one
fsync, a few ms on an SD card, more when the card is busy). Commands are rare, so the daemon
runs each call with ``asyncio.to_thread`` and the event loop never waits for the card; tests
call it directly. A lock serialises calls, so the connection may be used from any thread.
"""

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

from gateway.commands.model import DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SKEW, Command
from gateway.core.errors import StoreError
from gateway.store.db import Schema, open_db, rollback, statements

log = logging.getLogger(__name__)

_V1 = """
CREATE TABLE IF NOT EXISTS nonces(
    nonce TEXT PRIMARY KEY,
    command_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    exp INTEGER NOT NULL,
    state TEXT NOT NULL CHECK(state IN ('accepted', 'done')),
    outcome TEXT,
    CHECK((state = 'done') = (outcome IS NOT NULL)));
CREATE INDEX IF NOT EXISTS nonces_done_exp ON nonces(exp) WHERE state = 'done';
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# version 0 is a file from before versioning, or a new one: the idempotent script serves both
_SCHEMA = Schema("replay cache", (lambda conn: statements(conn, _V1),))
_COLUMNS = "command_id, nonce, name, args, exp, state, outcome"

State = Literal["accepted", "done"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One accepted command as the cache remembers it."""

    command_id: str
    nonce: str
    name: str
    args: Mapping[str, Any]
    exp: int
    state: State  # accepted: claimed, not finished (running, or interrupted by a crash)
    outcome: Mapping[str, Any] | None  # what finish() recorded; None while accepted


class ReplayCache:
    """The persistent nonce cache. Create with ``ReplayCache.open``; ``close`` when done."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        max_skew: float,
        max_lifetime: float,
        quarantined: Path | None,
    ) -> None:
        self._conn = conn
        self.path = path
        self.max_skew = max_skew
        self.max_lifetime = max_lifetime
        self.quarantined = quarantined  # where a corrupt file went at open, if one did
        self._lock = threading.Lock()
        self._floor = self._load_floor()

    # -- life cycle ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        now: float,
        max_skew: float = DEFAULT_MAX_SKEW,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
    ) -> "ReplayCache":
        """Open (creating, checking or quarantining) the cache at ``path``.

        ``now`` (wall time) is used only when the file must be quarantined (invariant 3).
        ``max_skew`` and ``max_lifetime`` must be the ``Verifier``'s.

        Raises:
            StoreError: the file cannot be created, opened or initialised (other than
                corruption, which is quarantined).
        """
        opened = open_db(path, _SCHEMA, needs_check=_always)
        conn, quarantined = opened.conn, opened.quarantined
        if quarantined is not None:
            log.warning(
                "replay cache %s started fresh: for one validity window every command is"
                " refused as a possible replay",
                path,
            )
            floor = now + max_skew + max_lifetime
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('floor', ?)", (repr(floor),)
                )
            except sqlite3.Error as exc:
                conn.close()
                raise StoreError(f"cannot initialise replay cache {path}: {exc}") from exc
        return cls(conn, path, max_skew, max_lifetime, quarantined)

    def close(self) -> None:
        """Release the file. Everything was committed already."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ReplayCache":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the protocol ------------------------------------------------------------------------

    @property
    def floor(self) -> float:
        """Commands with ``exp`` at or below this are refused by ``claim`` (invariant 3)."""
        return self._floor

    def claim(self, cmd: Command) -> bool:
        """Record ``cmd`` as accepted, before executing it; False if it must not run.

        False means its nonce or its id was claimed before (a duplicate delivery or a replay),
        or it expires at or below the floor. Look at ``entry(cmd.id)`` to tell a duplicate of
        a command already answered (state ``done``: re-send ``outcome``) from one still
        running or interrupted (``accepted``) and from a replay under another id (None).

        Raises:
            StoreError: the claim could not be committed; do not execute the command.
        """
        args = json.dumps(cmd.arguments(), ensure_ascii=False, separators=(",", ":"))
        with self._write() as conn:
            if cmd.exp <= self._floor:
                return False
            cursor = conn.execute(
                "INSERT INTO nonces(nonce, command_id, name, args, exp, state)"
                " VALUES(?, ?, ?, ?, ?, 'accepted') ON CONFLICT DO NOTHING",
                (cmd.nonce, cmd.id, cmd.name, args, cmd.exp),
            )
            return cursor.rowcount == 1

    def finish(self, command_id: str, outcome: Mapping[str, Any]) -> None:
        """Record the outcome of a claimed command (what was answered on ``cmd-result``).

        Raises:
            KeyError: ``command_id`` was never claimed (or was pruned).
            ValueError: it is finished already; or ``outcome`` is not JSON (as ``TypeError``).
            StoreError: the outcome could not be committed.
        """
        body = json.dumps(dict(outcome), ensure_ascii=False, allow_nan=False)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE nonces SET state='done', outcome=? WHERE command_id=? AND state='accepted'",
                (body, command_id),
            )
            if cursor.rowcount == 1:
                return
            if conn.execute("SELECT 1 FROM nonces WHERE command_id=?", (command_id,)).fetchone():
                raise ValueError(f"command {command_id!r} is finished already")
            raise KeyError(command_id)

    def outcome(self, command_id: str) -> dict[str, Any] | None:
        """The outcome ``finish`` recorded for ``command_id``; None if none (yet).

        Raises:
            StoreError: the file could not be read.
        """
        entry = self.entry(command_id)
        return None if entry is None or entry.outcome is None else dict(entry.outcome)

    def entry(self, command_id: str) -> Entry | None:
        """What the cache holds about ``command_id``; None if it never was or was pruned.

        Raises:
            StoreError: the file could not be read.
        """
        rows = self._read(f"SELECT {_COLUMNS} FROM nonces WHERE command_id=?", (command_id,))
        return _entry(rows[0]) if rows else None

    def interrupted(self) -> list[Entry]:
        """Commands claimed but never finished, oldest claim first.

        Called at start, before any new claim, these are the executions a crash interrupted:
        report each (e.g. ``{"status": "interrupted"}``) and ``finish`` it; never re-run them.
        While the daemon runs, the list also holds the commands executing right now.

        Raises:
            StoreError: the file could not be read.
        """
        rows = self._read(f"SELECT {_COLUMNS} FROM nonces WHERE state='accepted' ORDER BY rowid")
        return [_entry(row) for row in rows]

    def prune(self, now: float) -> int:
        """Drop finished commands that expired (``exp + max_skew <= now``); how many went.

        Raises the floor to ``now - max_skew`` (invariant 3). Call it periodically or before
        each claim; it is one indexed delete.

        Raises:
            StoreError: the change could not be committed.
        """
        floor = max(self._floor, now - self.max_skew)
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM nonces WHERE state='done' AND exp <= ?", (floor,))
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES('floor', ?)", (repr(floor),)
            )
            dropped = cursor.rowcount
        self._floor = floor
        return dropped

    def size(self) -> int:
        """Rows held (for the cache-size metric).

        Raises:
            StoreError: the file could not be read.
        """
        return int(self._read("SELECT COUNT(*) FROM nonces")[0][0])

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"replay cache {self.path}: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StoreError(f"replay cache {self.path}: {exc}") from exc
            except BaseException:
                _rollback(conn)
                raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"replay cache {self.path}: {exc}") from exc

    def _load_floor(self) -> float:
        rows = self._read("SELECT value FROM meta WHERE key='floor'")
        return float(rows[0][0]) if rows else float("-inf")


def _always(conn: sqlite3.Connection) -> bool:
    """The file is small: checking it at every open costs little and catches a torn card."""
    del conn
    return True


def _rollback(conn: sqlite3.Connection) -> None:
    # the error that got us here is what the caller needs; a failed rollback adds nothing
    # (SQLite rolls back an open transaction itself when the connection closes)
    with suppress(sqlite3.Error):
        if conn.in_transaction:
            rollback(conn)


def _entry(row: tuple[Any, ...]) -> Entry:
    command_id, nonce, name, args, exp, state, outcome = row
    return Entry(
        command_id=command_id,
        nonce=nonce,
        name=name,
        args=json.loads(args),
        exp=exp,
        state=cast(State, state),
        outcome=None if outcome is None else json.loads(outcome),
    )
