"""The availability tables of the store file: written by the recorder, read by the reports.

Contract:
- Every function takes an open connection to a store file of schema version 4 or later
  (``gateway.store.schema``) and runs inside the caller's transaction (the store thread's
  ``transact``) or, for ``load``, on a read-only connection (``open_read_only``); none commits.
- ``availability`` holds changes only: (device, wall time, online 1 or 0, or NULL from when
  the device is no longer configured). ``restarts`` holds the gateway's own outages, from the
  last time it was known alive (``meta.alive_until``: the recorder's heartbeat, and a clean
  stop) to its next start, with whether that stop was clean. ``readings`` counts readings per
  device and local day (``YYYY-MM-DD`` in the zone they were counted in). ``devices`` keeps
  each device's kind, supplier and poll interval as last configured.
- ``purge`` keeps, per device, the newest change older than the cut: the state the device
  carries into the kept history, so a device unchanged for longer than the retention is still
  known. Restarts that ended before the cut, and reading counts of days before it, go.
"""

import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.core.errors import StoreError
from gateway.store.schema import STORE

HISTORY_VERSION = 4  # the store schema that added these tables
ALIVE = "alive_until"  # meta: wall time the gateway was last known alive
CLEAN = "alive_clean"  # meta: "1" when that was a clean stop
Change = tuple[str, float, int | None]  # device, wall time, online (1, 0, or None: removed)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as the reports show it: what it is, who supplies it, how often it is polled."""

    id: str
    kind: str | None  # None for a device heard from but never configured under that id
    supplier: str | None
    interval: float | None  # seconds between polls; None: not polled (completeness n/a)
    configured: bool = True


@dataclass(frozen=True, slots=True)
class Restart:
    """The gateway's own outage: from the last time it was known alive to its next start."""

    down: float
    up: float
    clean: bool  # it was stopped, not killed: ``down`` is the stop itself


@dataclass(frozen=True, slots=True)
class History:
    """What ``load`` read for one span of time."""

    devices: Mapping[str, DeviceInfo]
    changes: Mapping[str, Sequence[tuple[float, bool | None]]]  # per device, oldest first,
    # the first being the state carried in from before the span, if there was one
    restarts: Sequence[Restart]
    readings: Mapping[str, Mapping[str, int]]  # device -> local day -> readings
    alive: float | None  # the last time the gateway was known alive
    stopped: bool = False  # that was a clean stop


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))


def write(
    conn: sqlite3.Connection,
    changes: Sequence[Change],
    counts: Mapping[tuple[str, str], int],
    alive: float,
    clean: bool = False,
) -> None:
    """Append ``changes``, add ``counts`` (device, local day) and stamp the gateway alive."""
    conn.executemany("INSERT INTO availability(device, ts, online) VALUES(?, ?, ?)", changes)
    conn.executemany(
        "INSERT OR IGNORE INTO devices(device) VALUES(?)", sorted({(c[0],) for c in changes})
    )
    conn.executemany(
        "INSERT INTO readings(device, day, n) VALUES(?, ?, ?)"
        " ON CONFLICT(device, day) DO UPDATE SET n = n + excluded.n",
        [(device, day, n) for (device, day), n in counts.items()],
    )
    _set_meta(conn, ALIVE, repr(alive))
    _set_meta(conn, CLEAN, "1" if clean else "0")


def begin(
    conn: sqlite3.Connection, now: float, devices: Sequence[DeviceInfo], restarted: bool
) -> Restart | None:
    """The recorder starts at wall time ``now`` with ``devices`` configured.

    With ``restarted`` (the first start of the process), the time since the gateway was last
    known alive is recorded as its own outage and returned. A device configured before and no
    longer is marked removed (a NULL change) from ``now``; the devices' kind, supplier and
    interval are kept as configured now.
    """
    gap = None
    alive = _meta(conn, ALIVE)
    if restarted and alive is not None and now > float(alive):
        gap = Restart(float(alive), now, _meta(conn, CLEAN) == "1")
        conn.execute(
            "INSERT INTO restarts(down, up, clean) VALUES(?, ?, ?)",
            (gap.down, gap.up, int(gap.clean)),
        )
    wanted = {d.id for d in devices}
    before = {r[0] for r in conn.execute("SELECT device FROM devices WHERE configured=1")}
    for device in sorted(before - wanted):
        last = conn.execute(
            "SELECT online FROM availability WHERE device=? ORDER BY ts DESC, rowid DESC LIMIT 1",
            (device,),
        ).fetchone()
        if last is not None and last[0] is not None:
            conn.execute(
                "INSERT INTO availability(device, ts, online) VALUES(?, ?, NULL)", (device, now)
            )
    conn.execute("UPDATE devices SET configured=0 WHERE configured=1")
    conn.executemany(
        "INSERT INTO devices(device, kind, supplier, interval, configured) VALUES(?, ?, ?, ?, 1)"
        " ON CONFLICT(device) DO UPDATE SET kind=excluded.kind, supplier=excluded.supplier,"
        " interval=excluded.interval, configured=1",
        [(d.id, d.kind, d.supplier, d.interval) for d in devices],
    )
    _set_meta(conn, ALIVE, repr(now))
    _set_meta(conn, CLEAN, "0")
    return gap


def purge(conn: sqlite3.Connection, cut: float, cut_day: str) -> int:
    """Forget what is older than wall time ``cut`` (and local day ``cut_day``); rows deleted."""
    newest = (
        "SELECT rowid FROM (SELECT rowid, MAX(ts) FROM availability WHERE ts < ? GROUP BY device)"
    )
    n = conn.execute(
        f"DELETE FROM availability WHERE ts < ? AND rowid NOT IN ({newest})", (cut, cut)
    ).rowcount
    # a device removed before the cut carries nothing into the kept history
    n += conn.execute("DELETE FROM availability WHERE ts < ? AND online IS NULL", (cut,)).rowcount
    n += conn.execute("DELETE FROM restarts WHERE up < ?", (cut,)).rowcount
    n += conn.execute("DELETE FROM readings WHERE day < ?", (cut_day,)).rowcount
    conn.execute(
        "DELETE FROM devices WHERE configured=0"
        " AND device NOT IN (SELECT device FROM availability)"
        " AND device NOT IN (SELECT device FROM readings)"
    )
    return n


def load(
    conn: sqlite3.Connection, start: float, end: float, first_day: str, last_day: str
) -> History:
    """The history of wall times [start, end) and local days ``first_day``..``last_day``."""
    devices = {
        r[0]: DeviceInfo(r[0], r[1], r[2], r[3], bool(r[4]))
        for r in conn.execute("SELECT device, kind, supplier, interval, configured FROM devices")
    }
    changes: dict[str, list[tuple[float, bool | None]]] = defaultdict(list)
    carried = conn.execute(
        "SELECT device, MAX(ts), online FROM availability WHERE ts < ? GROUP BY device", (start,)
    )
    within = conn.execute(
        "SELECT device, ts, online FROM availability WHERE ts >= ? AND ts < ? ORDER BY ts, rowid",
        (start, end),
    )
    for rows in (carried, within):
        for device, ts, online in rows:
            changes[device].append((float(ts), None if online is None else bool(online)))
    restarts = [
        Restart(float(down), float(up), bool(clean))
        for down, up, clean in conn.execute(
            "SELECT down, up, clean FROM restarts WHERE up > ? AND down < ? ORDER BY down",
            (start, end),
        )
    ]
    readings: dict[str, dict[str, int]] = defaultdict(dict)
    for device, day, n in conn.execute(
        "SELECT device, day, n FROM readings WHERE day >= ? AND day <= ?", (first_day, last_day)
    ):
        readings[device][day] = int(n)
    for device in changes.keys() | readings.keys():
        devices.setdefault(device, DeviceInfo(device, None, None, None, False))
    alive = _meta(conn, ALIVE)
    return History(
        devices,
        dict(changes),
        restarts,
        dict(readings),
        None if alive is None else float(alive),
        _meta(conn, CLEAN) == "1",
    )


def restarts_since(conn: sqlite3.Connection, since: float) -> list[Restart]:
    """The gateway's own outages that ended after wall time ``since``, oldest first."""
    return [
        Restart(float(down), float(up), bool(clean))
        for down, up, clean in conn.execute(
            "SELECT down, up, clean FROM restarts WHERE up > ? ORDER BY down", (since,)
        )
    ]


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the store file at ``path``, for ``load`` without the daemon.

    Read-only, so a report never writes to the file (no migration, no clean-shutdown mark); a
    running daemon may go on writing meanwhile (WAL). Raises ``StoreError`` when there is no
    such file, it is not a store, or its schema has no availability history.
    """
    if not path.is_file():
        raise StoreError(f"no store file at {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            has_meta = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
        except BaseException:
            conn.close()
            raise
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the store file {path}: {exc}") from exc
    why = None
    if version > STORE.version:
        why = f"it was written by a newer release (schema version {version})"
    elif version < HISTORY_VERSION or not has_meta:
        why = (
            f"it has no availability history yet (schema version {version}): the gateway"
            f" records it from schema version {HISTORY_VERSION} on, once it has started"
        )
    if why is not None:
        conn.close()
        raise StoreError(f"cannot report from the store file {path}: {why}")
    return conn
