"""Making room: the oldest telemetry goes, and every reading lost is in a gap report.

``evict(ledger, txn, needed, now)`` runs inside the ledger's write transaction (invariant 4 of
``gateway.store.outbox``): it deletes the oldest telemetry rows until ``needed`` bytes (and
some slack) are free and folds what was lost into one ``gap`` row per device, merged into that
device's newest gap not yet handed to a sink. Accounting is exact for the sinks that receive
gap reports: a row in flight to one of them is never evicted, a row all of them confirmed is
evicted without a gap, so the platform can account for every seq (received, or in a gap).
"""

import json
from collections import defaultdict

from gateway.core.contract import iso
from gateway.core.messages import Lane, Record
from gateway.store.codec import encode
from gateway.store.model import INSERT, gap_fields, size
from gateway.store.txn import Books, Txn


def evict(ledger: Books, txn: Txn, needed: int, now: float) -> None:
    """Delete the oldest telemetry to free ``needed`` bytes (plus slack); report gaps.

    Exact accounting for the sinks that receive the gap reports (those taking the event
    lane): a row one of them holds in flight (handed, not confirmed) is never evicted, as it
    may arrive yet; a row they all confirmed is evicted without a gap (it is lost only to
    the others, e.g. InfluxDB: counted as ``evicted``); every other row evicted is in a gap.
    """
    conn = ledger.conn
    target = max(needed, ledger.quota // 64)
    with ledger.lock:
        reporting = [s for s in ledger.cursors.sinks if Lane.EVENT in ledger.cursors.lanes[s]]
        flight = [
            (ledger.cursors.confirmed[s][Lane.TELEMETRY], ledger.cursors.handed[s][Lane.TELEMETRY])
            for s in reporting
        ]
    freed, gone = 0, []
    spans: dict[str, list[str]] = {}
    counts: dict[str, int] = defaultdict(int)
    for rid, device, ts, charge in conn.execute(
        "SELECT id, device, ts, size FROM outbox WHERE lane=? ORDER BY id LIMIT 4096",
        (int(Lane.TELEMETRY),),
    ).fetchall():
        if freed >= target:
            break
        if any(low < rid <= high for low, high in flight):
            continue  # on its way to a reporting sink: not lost (yet)
        freed += charge
        gone.append((rid,))
        if all(rid <= low for low, _ in flight):
            continue  # every reporting sink has it
        stamp = iso(ts)
        span = spans.setdefault(device, [stamp, stamp])
        span[0], span[1] = min(span[0], stamp), max(span[1], stamp)
        counts[device] += 1
        now = max(now, ts)  # a gap is reported no earlier than its last lost reading
    if not gone:
        return
    conn.executemany("DELETE FROM outbox WHERE id=?", gone)
    txn.used -= freed
    txn.count("evicted", len(gone))
    for device, (first, last) in spans.items():
        _record_gap(ledger, txn, device, first, last, counts[device], now)


Lost = dict[str, tuple[float, float, int]]  # device -> (first ts, last ts, count)


def note_lost(lost: Lost, device: str, ts: float, count: int = 1) -> None:
    """Add ``count`` readings of ``device`` at ``ts`` to ``lost`` (dropped without a row)."""
    first, last, n = lost.get(device, (ts, ts, 0))
    lost[device] = (min(first, ts), max(last, ts), n + count)


def merge_lost(into: Lost, lost: Lost) -> None:
    """Add every device's readings of ``lost`` to ``into``."""
    for device, (first, last, count) in lost.items():
        note_lost(into, device, first, count)
        note_lost(into, device, last, 0)


def report_lost(ledger: Books, txn: Txn, lost: Lost) -> None:
    """Fold readings dropped before they had a row into their devices' gap reports."""
    for device, (first, last, count) in lost.items():
        _record_gap(ledger, txn, device, iso(first), iso(last), count, last)


def _record_gap(
    ledger: Books, txn: Txn, device: str, first: str, last: str, count: int, now: float
) -> None:
    """Fold the eviction into this device's newest gap row if no sink may have seen it.

    A row that was handed out once is never changed, even if it came back (a lost link): the
    platform may hold the first copy and would drop a changed one with the same seq.
    """
    conn = ledger.conn
    with ledger.lock:
        sent = ledger.cursors.newest_sent(Lane.EVENT)
    row = conn.execute(
        "SELECT id, body, size FROM outbox WHERE lane=? AND topic='gap' AND device=? AND id>?"
        " ORDER BY id DESC LIMIT 1",
        (int(Lane.EVENT), device, sent),
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
        INSERT,
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
