"""The welfare tables of the store file (schema version 5, ``gateway.store.schema``).

Contract: every function takes a connection inside the caller's transaction (the store
thread's ``transact``) and never commits. ``welfare_households`` holds one row per watched
household: its last sign of life (wall time, kind, the door or device: never a person) and the
quiet seconds counted up to ``as_of``. ``welfare_absences`` holds planned absences with who
entered them and their note; ``forget`` deletes those ended before a cut (their notes may be
personal: kept no longer than the retention, docs/welfare.md) and the rows of households no
longer configured.
"""

import sqlite3
from collections.abc import Iterable

from gateway.welfare.watch import Absence, Sign

Saved = tuple[str, float, float, Sign | None]  # household, counted, as_of, last sign


def load(conn: sqlite3.Connection) -> tuple[list[Saved], list[Absence]]:
    """Every household's saved count and every absence."""
    saved: list[Saved] = []
    for hid, ts, kind, source, counted, as_of in conn.execute(
        "SELECT household, last_ts, last_kind, last_source, counted, as_of FROM welfare_households"
    ):
        last = None if ts is None else Sign(hid, float(ts), str(kind), str(source))
        saved.append((hid, float(counted), float(as_of), last))
    absences = [
        Absence(int(i), h, float(start), float(end), note, by)
        for i, h, start, end, note, by in conn.execute(
            "SELECT id, household, start, end, note, by FROM welfare_absences ORDER BY id"
        )
    ]
    return saved, absences


def save(conn: sqlite3.Connection, rows: Iterable[Saved]) -> None:
    """Replace the saved count of each household in ``rows``."""
    conn.executemany(
        "INSERT OR REPLACE INTO welfare_households"
        "(household, last_ts, last_kind, last_source, counted, as_of) VALUES(?, ?, ?, ?, ?, ?)",
        [
            (
                hid,
                None if last is None else last.ts,
                None if last is None else last.kind,
                None if last is None else last.source,
                counted,
                as_of,
            )
            for hid, counted, as_of, last in rows
        ],
    )


def add_absence(
    conn: sqlite3.Connection, household: str, start: float, end: float, note: str, by: str,
    created: float,
) -> int:  # fmt: skip
    """Insert a planned absence; its id."""
    cur = conn.execute(
        "INSERT INTO welfare_absences(household, start, end, note, by, created)"
        " VALUES(?, ?, ?, ?, ?, ?)",
        (household, start, end, note, by, created),
    )
    return int(cur.lastrowid or 0)


def delete_absence(conn: sqlite3.Connection, absence_id: int) -> None:
    """Delete one planned absence."""
    conn.execute("DELETE FROM welfare_absences WHERE id=?", (absence_id,))


def forget(conn: sqlite3.Connection, households: Iterable[str], ended_before: float) -> int:
    """Delete absences ended before ``ended_before`` and households not in ``households``."""
    keep = sorted(set(households))
    marks = ",".join("?" * len(keep))
    n = conn.execute("DELETE FROM welfare_absences WHERE end < ?", (ended_before,)).rowcount
    n += conn.execute(
        f"DELETE FROM welfare_households WHERE household NOT IN ({marks})", keep
    ).rowcount
    n += conn.execute(
        f"DELETE FROM welfare_absences WHERE household NOT IN ({marks})", keep
    ).rowcount
    return n
