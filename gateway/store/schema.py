"""The store file's schema, one migration per version (applied by ``gateway.store.db``).

Version 0 is every file written before the schema was versioned: it may be empty, or hold the
outbox with or without the ``expires`` column, and the alarm engine's table or not. Version 1
is that layout made explicit, the alarm table included: every statement is idempotent, so one
migration serves both. Version 2 keeps records as fields (``gateway.store.codec``) instead of
the upstream JSON. Version 3 keeps telemetry points as the contract's point objects, which the
MQTT sink splices into its payloads unparsed. Version 4 adds the availability history that the
proof-of-service reports read (``gateway.reports.history``): every device's online/offline
changes, the gateway's own outages, readings per device and local day, and the devices' kind,
supplier and poll interval; it adds tables only, so every older file upgrades in place. Version 5
adds the welfare checks' tables (``gateway.welfare.saved``): each watched household's last sign
of life and quiet time counted, and the planned absences; tables only again. A new
version appends a function; a released one is never edited.
"""

import json
import sqlite3
from collections.abc import Callable

from gateway.core.messages import Lane
from gateway.store.codec import compact, points_from_contract, points_from_v2
from gateway.store.db import Schema, statements

_V1 = """
CREATE TABLE IF NOT EXISTS outbox(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lane INTEGER NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL, device TEXT NOT NULL,
    ts REAL NOT NULL, synced INTEGER NOT NULL, retain INTEGER NOT NULL,
    body TEXT NOT NULL, size INTEGER NOT NULL, expires REAL);
CREATE INDEX IF NOT EXISTS outbox_lane ON outbox(lane, id);
CREATE INDEX IF NOT EXISTS outbox_expires ON outbox(expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS lane_seq(lane INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(
    sink TEXT NOT NULL, lane INTEGER NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY(sink, lane));
CREATE TABLE IF NOT EXISTS counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alarms(
    id TEXT PRIMARY KEY, open INTEGER NOT NULL, raised_at REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms(open, raised_at);
"""


def _v1(conn: sqlite3.Connection) -> None:
    """The unversioned layout, made whole: a file from before retention gains ``expires``."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    if columns and "expires" not in columns:
        conn.execute("ALTER TABLE outbox ADD COLUMN expires REAL")
    statements(conn, _V1)


def _v2(conn: sqlite3.Connection) -> None:
    """Bodies hold fields, not wire JSON: telemetry points become ``gateway.store.codec`` arrays.

    Other lanes' bodies are the JSON object of their fields already. A telemetry body that is
    not the contract's telemetry JSON cannot be delivered as telemetry: it is deleted and
    counted as dropped, never a reason to refuse the file.
    """
    _rewrite_telemetry(conn, lambda body: compact(points_from_contract(json.loads(body))))


def _v3(conn: sqlite3.Connection) -> None:
    """Telemetry points become the contract's point objects (``gateway.store.codec``).

    A body that is not a version-2 points array is deleted and counted, as in version 2.
    """
    _rewrite_telemetry(conn, points_from_v2)


_V4 = """
CREATE TABLE availability(device TEXT NOT NULL, ts REAL NOT NULL, online INTEGER);
CREATE INDEX availability_device ON availability(device, ts);
CREATE INDEX availability_ts ON availability(ts);
CREATE TABLE restarts(down REAL NOT NULL, up REAL NOT NULL, clean INTEGER NOT NULL);
CREATE TABLE readings(
    device TEXT NOT NULL, day TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY(device, day)) WITHOUT ROWID;
CREATE TABLE devices(
    device TEXT PRIMARY KEY, kind TEXT, supplier TEXT, interval REAL,
    configured INTEGER NOT NULL DEFAULT 0);
"""


def _v4(conn: sqlite3.Connection) -> None:
    """The availability history: ``online`` NULL marks a device no longer configured."""
    statements(conn, _V4)


_V5 = """
CREATE TABLE welfare_households(
    household TEXT PRIMARY KEY, last_ts REAL, last_kind TEXT, last_source TEXT,
    counted REAL NOT NULL, as_of REAL NOT NULL);
CREATE TABLE welfare_absences(
    id INTEGER PRIMARY KEY AUTOINCREMENT, household TEXT NOT NULL,
    start REAL NOT NULL, end REAL NOT NULL, note TEXT NOT NULL, by TEXT NOT NULL,
    created REAL NOT NULL);
CREATE INDEX welfare_absences_end ON welfare_absences(end);
"""


def _v5(conn: sqlite3.Connection) -> None:
    """The welfare checks: each household's last sign and quiet time, the planned absences."""
    statements(conn, _V5)


def _rewrite_telemetry(conn: sqlite3.Connection, convert: Callable[[str], str]) -> None:
    """Every telemetry body through ``convert``; one it refuses is deleted and counted."""
    lane = int(Lane.TELEMETRY)
    bad = 0
    for rid, body, charge in conn.execute(
        "SELECT id, body, size FROM outbox WHERE lane=?", (lane,)
    ).fetchall():
        try:
            new = convert(body)
        except (ValueError, TypeError, KeyError):
            conn.execute("DELETE FROM outbox WHERE id=?", (rid,))
            bad += 1
            continue
        conn.execute(
            "UPDATE outbox SET body=?, size=? WHERE id=?", (new, charge - len(body) + len(new), rid)
        )
    if bad:
        conn.execute(
            "INSERT INTO counters(name, value) VALUES('dropped', ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (bad,),
        )


STORE = Schema("store", (_v1, _v2, _v3, _v4, _v5))


def unclean(conn: sqlite3.Connection) -> bool:
    """Whether the file was not closed cleanly (so it needs a ``quick_check``); read-only."""
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone():
        return False
    row = conn.execute("SELECT value FROM meta WHERE key='clean'").fetchone()
    return row is None or row[0] != "1"
