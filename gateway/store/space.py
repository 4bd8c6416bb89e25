"""How much of the configured quota the disk can hold: the quota checked at start.

``effective(path, quota, reserve)`` is the quota (and reserve) the store can keep: the
configured one, or less when the file system holding ``path`` is smaller. SQLite's files take
more room than the bytes the store accounts (page slack, indexes, the WAL between checkpoints),
so the store is given at most ``SHARE`` of what it could grow into (the free space plus its
files now), keeping room for the WAL and for everything else on the disk; a lower quota is
logged. ``tune(conn, quota)`` sizes the WAL's checkpoints to the quota, so the WAL never
outgrows it.
"""

import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)
SHARE = 0.4  # of (free space + the store's files) the store's accounted bytes may use
SUFFIXES = ("", "-wal", "-shm")


def effective(path: Path, quota: int, reserve: int) -> tuple[int, int]:
    """The quota and reserve to use: the configured ones, or less (logged) on a small disk."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return quota, reserve
    free = st.f_bavail * st.f_frsize
    files = sum(f.stat().st_size for s in SUFFIXES if (f := Path(f"{path}{s}")).exists())
    room = int((free + files) * SHARE)
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


def tune(conn: sqlite3.Connection, quota: int) -> None:
    """Keep the WAL small next to ``quota``: checkpoint every eighth of it, truncate back.

    SQLite's defaults (a checkpoint every 1,000 pages, 4 MiB) would let the WAL alone fill a
    small disk; a store's own quota is the measure of how much room there is.
    """
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = max(16, min(1000, quota // page // 8))
    conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
    conn.execute(f"PRAGMA journal_size_limit={max(pages * page, quota // 4)}")
