"""``python -m tests.support.faulty FAULT cgw-args...``: the real daemon with one fault put in.

The daemon is ``gateway.cli.main.main`` unchanged; before it starts, this module patches one
seam of the composition root or the alarm engine, chosen by ``FAULT``:

- ``stubborn``: one more input component, ``stubborn``, that swallows every cancel and never
  ends (a reconnect loop that catches ``CancelledError``). Its start is logged as
  "stubborn component running".
- ``hold-alarm-commit``: the alarm engine stops just before committing a transition that
  raises an alarm: it logs "holding alarm commit" and waits forever, so a test can SIGKILL the
  daemon between receiving a press and committing its alarm.
- ``hold-telemetry-flush``: the store stops just before committing a batch that holds
  telemetry: it logs "holding store flush" and waits forever, so a test can SIGKILL the daemon
  between receiving a reading (an HTTP device's post) and committing it.

The failpoints of the fault matrix (row F29): the daemon kills itself with SIGKILL the first
time it reaches the point, after logging "failpoint <name>". Each is a seam around code the
gateway runs anyway:

- ``after_insert_before_commit``: an alarm's transaction has inserted its rows (the alarm and
  its message) and is about to COMMIT.
- ``after_commit_before_ack_source``: a press is committed and its PUBACK to the local broker
  is about to go out.
- ``after_publish_before_puback``: an alarm message was published upstream and its PUBACK has
  arrived, not yet handled.
- ``after_puback_before_mark_sent``: the upstream sink is about to commit a cursor that
  covers alarm rows (their PUBACKs arrived).
- ``during_checkpoint``: the store is about to checkpoint its WAL into the file (at a stop).
- ``during_eviction``: the store has evicted telemetry for room and is about to COMMIT.
- ``during_migration``: a schema step after the first has run and is about to COMMIT.
"""

import asyncio
import dataclasses
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from gateway.alarms.engine import AlarmEngine
from gateway.cli.main import main
from gateway.config.models import Config
from gateway.core.messages import Lane
from gateway.runtime.components import INPUTS, Component
from gateway.runtime.root import Runtime
from gateway.store import Store

log = logging.getLogger("tests.support.faulty")


def stubborn() -> None:
    wanted = Runtime._wanted

    async def never_stops() -> None:
        log.warning("stubborn component running")
        while True:
            try:
                await asyncio.Future()
            except asyncio.CancelledError:
                continue  # the fault: a stop swallowed

    def _wanted(self: Runtime, cfg: Config) -> list[Component]:
        return [*wanted(self, cfg), Component("stubborn", INPUTS, "", never_stops)]

    Runtime._wanted = _wanted  # type: ignore[method-assign]


def hold_alarm_commit() -> None:
    commit = AlarmEngine._commit

    async def _commit(self: AlarmEngine, transitions: Sequence[Any]) -> None:
        if any(t.previous is None for t in transitions):  # a new alarm
            log.warning("holding alarm commit")
            await asyncio.Future()
        await commit(self, transitions)

    AlarmEngine._commit = _commit  # type: ignore[method-assign]


def hold_telemetry_flush() -> None:
    flush = Store.flush

    async def _flush(self: Store) -> None:
        if any(rec.lane is Lane.TELEMETRY for rec, _ in self._queue):
            log.warning("holding store flush")
            await asyncio.Future()
        await flush(self)

    Store.flush = _flush  # type: ignore[method-assign]


def die(point: str) -> NoReturn:
    """Log the failpoint, then SIGKILL this process: nothing after it runs, as in a power cut."""
    log.warning("failpoint %s", point)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


class _Conn:
    """The store's connection, with a failpoint at the COMMIT of chosen transactions."""

    def __init__(self, conn: sqlite3.Connection, point: str) -> None:
        self._conn = conn
        self._point = point
        self._marked = False  # this transaction did what the failpoint waits for

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def mark(self) -> None:
        self._marked = True

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("BEGIN"):
            self._marked = False
        elif sql == "COMMIT" and self._marked:
            die(self._point)
        elif self._point == "after_insert_before_commit" and "INTO alarms" in sql:
            self._marked = True
        elif self._point == "during_checkpoint" and sql.startswith("PRAGMA wal_checkpoint"):
            die(self._point)
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        if self._point == "after_insert_before_commit" and "INTO alarms" in sql:
            self._marked = True
        return self._conn.executemany(sql, rows)


def failpoint(point: str) -> None:
    """Put in the failpoint ``point`` (see the module docstring)."""
    import aiomqtt
    import paho.mqtt.client as paho

    from gateway.store import db, eviction, ledger
    from gateway.store.ledger import Ledger

    if point in ("after_insert_before_commit", "during_checkpoint", "during_eviction"):
        init = Ledger.__init__

        def __init__(self: Ledger, conn: sqlite3.Connection, *args: Any) -> None:
            init(self, _Conn(conn, point), *args)  # type: ignore[arg-type]

        Ledger.__init__ = __init__  # type: ignore[method-assign,assignment]
    if point == "during_eviction":
        evict = eviction.evict

        def evicting(books: Any, txn: Any, needed: int, now: float) -> None:
            evict(books, txn, needed, now)
            books.conn.mark()  # dies at this transaction's COMMIT

        ledger.evict = evicting  # type: ignore[attr-defined,assignment]  # the name it calls
    if point == "after_commit_before_ack_source":
        paho.Client.ack = lambda self, mid, qos: die(point)  # type: ignore[method-assign]
    if point == "after_publish_before_puback":
        publish, handle = aiomqtt.Client.publish, paho.Client._handle_pubackcomp
        armed = []

        async def publishing(self: aiomqtt.Client, topic: str, *args: Any, **kw: Any) -> None:
            if "/alarm/" in topic:
                armed.append(topic)
            await publish(self, topic, *args, **kw)

        def acked(self: paho.Client, *args: Any) -> Any:
            if armed:
                die(point)
            return handle(self, *args)

        aiomqtt.Client.publish = publishing  # type: ignore[method-assign,assignment]
        paho.Client._handle_pubackcomp = acked  # type: ignore[method-assign,assignment]
    if point == "after_puback_before_mark_sent":
        ack = Store.ack

        async def acking(self: Store, sink: str, upto: dict[Lane, int]) -> None:
            if upto.get(Lane.ALARM, 0) > 0:
                die(point)
            await ack(self, sink, upto)

        Store.ack = acking  # type: ignore[method-assign]
    if point == "during_migration":
        migrate = db.migrate

        def migrating(conn: sqlite3.Connection, schema: Any) -> None:
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) >= schema.version:
                return
            steps = list(schema.migrations)

            def step(n: int) -> Callable[[sqlite3.Connection], None]:
                def run(c: sqlite3.Connection) -> None:
                    steps[n](c)
                    if n >= 1:  # the first step committed, a later one not
                        die(point)

                return run

            migrate(
                conn, dataclasses.replace(schema, migrations=tuple(map(step, range(len(steps)))))
            )

        db.migrate = migrating


POINTS = (
    "after_insert_before_commit",
    "after_commit_before_ack_source",
    "after_publish_before_puback",
    "after_puback_before_mark_sent",
    "during_checkpoint",
    "during_eviction",
    "during_migration",
)

FAULTS = {
    "stubborn": stubborn,
    "hold-alarm-commit": hold_alarm_commit,
    "hold-telemetry-flush": hold_telemetry_flush,
}

if __name__ == "__main__":
    if sys.argv[1] in POINTS:
        failpoint(sys.argv[1])
    else:
        FAULTS[sys.argv[1]]()
    raise SystemExit(main(sys.argv[2:]))
