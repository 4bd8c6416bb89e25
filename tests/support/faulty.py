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
"""

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

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


FAULTS = {
    "stubborn": stubborn,
    "hold-alarm-commit": hold_alarm_commit,
    "hold-telemetry-flush": hold_telemetry_flush,
}

if __name__ == "__main__":
    FAULTS[sys.argv[1]]()
    raise SystemExit(main(sys.argv[2:]))
