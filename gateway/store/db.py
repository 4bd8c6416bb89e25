"""Opening an SQLite file of the gateway: connection, pragmas, checks, versioned schema.

One opener for every SQLite file the gateway keeps (the store, the command replay cache).

Invariants:

1. A file is in WAL mode with ``synchronous=FULL`` before anything is written to it: a
   committed transaction survives a killed process and, on storage that honours flushes, a
   power cut.
2. ``PRAGMA user_version`` is the schema version. ``Schema.migrations[i]`` takes a file from
   version ``i`` to ``i + 1``; each runs in its own ``BEGIN IMMEDIATE ... COMMIT`` together
   with the new ``user_version``, so a crash mid-upgrade leaves the file at the last version
   it fully reached, and the next open resumes from there. Files written before versioning
   read as version 0, which is why every first migration is idempotent
   (``CREATE ... IF NOT EXISTS``).
3. A file that is corrupt (not a database, failing ``quick_check`` when one is asked for, or
   found damaged by the migration or the caller's first reads: a file marked clean is not
   checked) is moved aside with its WAL and shm files, never deleted, logged at ERROR, and a
   fresh file is opened: corruption never becomes a crash loop. A caller whose own first reads
   hit the damage uses ``corrupt``, ``quarantine`` and ``fresh``.
4. A file whose ``user_version`` is newer than the code knows (a downgrade) is refused before
   anything is written to it: it is moved aside the same way, logged at CRITICAL, and a fresh
   file is opened. Its rows are kept for the newer release, never reinterpreted.
5. Any other SQLite or file-system error is a ``StoreError``. When the file or its folder
   cannot be written (a read-only file system, a folder or file this user may not write),
   the message says so and what to do, not only SQLite's "unable to open database file".

Every call here is synchronous: the caller runs it on its own thread.
"""

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import StoreError

log = logging.getLogger(__name__)

Migration = Callable[[sqlite3.Connection], None]
_SUFFIXES = ("", "-wal", "-shm")


@dataclass(frozen=True, slots=True)
class Schema:
    """What a file holds: ``migrations[i]`` upgrades version ``i`` to ``i + 1``."""

    label: str  # "store", "replay cache": used in messages and log lines
    migrations: tuple[Migration, ...]

    @property
    def version(self) -> int:
        """The version this code writes."""
        return len(self.migrations)


@dataclass(frozen=True, slots=True)
class Opened:
    """An open, checked, current connection and what happened on the way."""

    conn: sqlite3.Connection
    quarantined: Path | None  # where a corrupt or too-new file went, if one did
    checked: bool  # quick_check ran on the file (and passed)


class _CorruptError(sqlite3.DatabaseError):
    """The file opened but failed its integrity check."""


class _NewerError(Exception):
    """The file's schema is newer than this code knows."""


def statements(conn: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement (``executescript`` would COMMIT the transaction)."""
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def open_db(
    path: Path,
    schema: Schema,
    *,
    needs_check: Callable[[sqlite3.Connection], bool],
    max_bytes: int | None = None,
) -> Opened:
    """Open ``path``: checked, quarantined if corrupt or too new, migrated to ``schema``.

    ``needs_check(conn)`` says whether this file needs a ``quick_check`` (it may read the file,
    never write it). ``max_bytes`` caps the file (``max_page_count``): hitting it is reported as
    SQLITE_FULL instead of filling the disk.

    Raises:
        StoreError: the file cannot be created, opened or migrated (other than corruption or a
            newer version, which are moved aside).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = unwritable(path, schema.label) or str(exc)
        raise StoreError(f"cannot create the folder of {schema.label} {path}: {why}") from exc
    quarantined = None
    checked = False
    try:
        conn, checked = _connect(path, schema, needs_check, max_bytes)
    except _NewerError as exc:
        quarantined = _move_aside(path, "newer", schema.label)
        log.critical(
            "%s %s has schema version %s, newer than this release knows (%d): moved it to %s"
            " untouched and started a fresh one; install the newer release to deliver it",
            schema.label,
            path,
            exc,
            schema.version,
            quarantined,
        )
    except sqlite3.DatabaseError as exc:
        if not corrupt(exc):
            raise _open_error("cannot open", path, schema.label, exc) from exc
        quarantined = quarantine(path, schema.label, exc)
    if quarantined is None:
        try:
            migrate(conn, schema)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if not corrupt(exc):  # a file marked clean is not checked: damage shows here
                raise _open_error("cannot initialise", path, schema.label, exc) from exc
            quarantined = quarantine(path, schema.label, exc)
        else:
            return Opened(conn, None, checked)
    return Opened(fresh(path, schema, max_bytes), quarantined, False)


def fresh(path: Path, schema: Schema, max_bytes: int | None = None) -> sqlite3.Connection:
    """A new, migrated file at ``path`` (where a quarantined one was); ``StoreError`` if not."""
    try:
        conn, _ = _connect(path, schema, lambda c: False, max_bytes)
    except (sqlite3.Error, _NewerError) as exc:
        raise _open_error("cannot open", path, schema.label, exc) from exc
    try:
        migrate(conn, schema)
    except sqlite3.Error as exc:
        conn.close()
        raise _open_error("cannot initialise", path, schema.label, exc) from exc
    return conn


def left_in(moved: Path, lanes: Mapping[int, str]) -> dict[str, int] | None:
    """Rows per lane label still in the outbox of a moved-aside file; None if unreadable.

    Read-only and best effort (the file is damaged or from another release): whatever goes
    wrong gives None, never an exception. Lanes this release does not know are left out.
    """
    try:
        conn = sqlite3.connect(f"{moved.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        found = conn.execute("SELECT lane, COUNT(*) FROM outbox GROUP BY lane").fetchall()
        return {lanes[n]: int(c) for n, c in found if n in lanes}
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so.

    On SQLITE_FULL and some I/O errors SQLite rolls back by itself; a second ROLLBACK would
    raise "cannot rollback - no transaction is active" and hide the error that matters.
    """
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the file's ``max_page_count``) is full."""
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"


def corrupt(exc: BaseException) -> bool:
    """Whether ``exc`` says the file is damaged or not a database at all."""
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or isinstance(exc, _CorruptError)


def quarantine(path: Path, label: str, exc: BaseException) -> Path:
    """Move a corrupt file aside (invariant 3), log it at ERROR; where it went.

    The caller has closed its connection to the file.
    """
    moved = _move_aside(path, "corrupt", label)
    log.error(
        "%s %s is corrupt (%s): moved it to %s for inspection and started a fresh one",
        label,
        path,
        " ".join(str(exc).split())[:200],
        moved,
    )
    return moved


def _open_error(what: str, path: Path, label: str, exc: BaseException) -> StoreError:
    why = unwritable(path, label)
    detail = f"{why} (SQLite: {exc})" if why else str(exc)
    return StoreError(f"{what} {label} {path}: {detail}")


def unwritable(path: Path, label: str) -> str | None:
    """Why the file at ``path`` (or the folder to hold it) cannot be written, with what to do.

    None when nothing is visibly wrong. The file system's read-only flag is checked first: it
    stops root too, while the ``access`` checks only say something for other users.
    """
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folder to create is missing: its nearest ancestor
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return None
    move = f"or set the {label}'s path to a writable folder"
    if read_only:
        return f"the file system holding {folder} is read-only; remount it read-write, {move}"
    user = f"this user (uid {os.geteuid()})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable by {user}; give it write access, {move}"
    for suffix in _SUFFIXES:
        file = Path(f"{path}{suffix}")
        if file.exists() and not os.access(file, os.R_OK | os.W_OK):
            return f"{file} is not writable by {user}; give it write access, {move}"
    return None


def _connect(
    path: Path,
    schema: Schema,
    needs_check: Callable[[sqlite3.Connection], bool],
    max_bytes: int | None,
) -> tuple[sqlite3.Connection, bool]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # read-only so far: a file of a newer release is refused before any write (invariant 4)
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > schema.version:
            raise _NewerError(str(version))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA journal_size_limit=67108864")
        if max_bytes is not None:
            page = int(conn.execute("PRAGMA page_size").fetchone()[0])
            conn.execute(f"PRAGMA max_page_count={max_bytes // page}")
        checked = needs_check(conn)
        if checked:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise _CorruptError("quick_check: " + str(result))
    except BaseException:
        conn.close()
        raise
    return conn, checked


def migrate(conn: sqlite3.Connection, schema: Schema) -> None:
    """Bring the file to ``schema.version``, one committed step per version (invariant 2)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    for target in range(version + 1, schema.version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            schema.migrations[target - 1](conn)
            conn.execute(f"PRAGMA user_version={target}")
        except BaseException:
            rollback(conn)
            raise
        conn.execute("COMMIT")
        if version:
            log.info("%s: schema upgraded to version %d", schema.label, target)


def _move_aside(path: Path, why: str, label: str) -> Path:
    """Move ``path`` and its WAL and shm files to ``<path>.<why>-<stamp>``; where they went."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    n = 0
    while any(Path(f"{target}{s}").exists() for s in _SUFFIXES):
        n += 1
        target = path.with_name(f"{path.name}.{why}-{stamp}-{n}")
    for suffix in _SUFFIXES:
        src = Path(f"{path}{suffix}")
        if src.exists():
            try:
                src.rename(Path(f"{target}{suffix}"))
            except OSError as exc:
                raise StoreError(f"cannot move {label} {src} aside: {exc}") from exc
    return target
