"""How much of the configured quota the disk can hold: the quota checked at start.

``effective(path, quota, reserve)`` is the quota (and reserve) the store can keep: the
configured one, or less when the file system holding ``path`` is smaller. SQLite's files take
more room than the bytes the store accounts (page slack, indexes, the WAL between checkpoints),
so the store is given at most ``SHARE`` of what it could grow into (the free space plus its
files now), keeping room for the WAL and for everything else on the disk; a lower quota is
logged. ``tune(conn, quota)`` sizes the WAL's checkpoints to the quota, so the WAL never
outgrows it.
"""

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)
SHARE = 0.4  # of (free space + the store's files) the store's accounted bytes may use
SUFFIXES = ("", "-wal", "-shm")


def effective(path: Path, quota: int, reserve: int) -> tuple[int, int]:
    """The quota and reserve to use: the configured ones, or less (logged) on a small disk."""
    free, files = _sizes(path)
    room = int((free + files) * SHARE) if free >= 0 else quota
    if room >= quota:
        return quota, reserve
    log.warning(
        "store %s: quota %d bytes configured, %d effective: the file system holding %s has"
        " %.1f MiB free and the store's files take %.1f MiB",
        path,
        quota,
        room,
        path.parent,
        free / 2**20,
        files / 2**20,
    )
    return room, min(reserve, room // 4)


def room(path: Path, quota: int) -> int:
    """The quota the disk holds now (at most ``quota``); for a store whose disk filled up."""
    free, files = _sizes(path)
    return quota if free < 0 else min(quota, int((free + files) * SHARE))


def _sizes(path: Path) -> tuple[int, int]:
    """Free bytes of the file system holding ``path`` (-1 if unknown), bytes of its files."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return -1, 0
    files = 0
    for suffix in SUFFIXES:
        with contextlib.suppress(OSError):
            files += Path(f"{path}{suffix}").stat().st_size
    return st.f_bavail * st.f_frsize, files


def tune(conn: sqlite3.Connection, quota: int) -> None:
    """Keep the WAL small next to ``quota``: checkpoint every eighth of it, truncate back.

    SQLite's defaults (a checkpoint every 1,000 pages, 4 MiB) would let the WAL alone fill a
    small disk; a store's own quota is the measure of how much room there is.
    """
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = max(16, min(1000, quota // page // 8))
    conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
    conn.execute(f"PRAGMA journal_size_limit={max(pages * page, quota // 4)}")
