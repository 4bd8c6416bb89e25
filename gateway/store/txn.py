"""One write transaction's changes to the ledger's memory, applied only after its COMMIT.

``Txn(ledger)`` starts from the ledger's figures; the transaction's code changes ``used`` and
``latest``, takes seqs (``next_seq``, written back by ``write_back`` inside the transaction)
and counts (``count``, persisted in the same transaction). ``apply`` makes the ledger's memory
follow once the COMMIT returned (invariant 7 of ``gateway.store.outbox``): a transaction that
rolled back changes nothing in memory.

``Books`` is what a transaction's helpers (``Txn``, ``gateway.store.eviction``) see of the
ledger: its connection and its in-memory figures, not the ledger itself.
"""

import sqlite3
import threading
from collections import defaultdict
from typing import Protocol

from gateway.core.messages import Lane
from gateway.store.cursors import Cursors


class Books(Protocol):
    """The ledger as a transaction's helpers see it (``gateway.store.ledger.Ledger``)."""

    conn: sqlite3.Connection
    lock: threading.Lock
    cursors: Cursors
    quota: int
    used: int
    latest: dict[Lane, int]
    counters: dict[str, int]


class Txn:
    """The memory changes of one transaction, applied only once it committed (invariant 2)."""

    def __init__(self, ledger: Books) -> None:
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
