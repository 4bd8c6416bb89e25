"""The welfare monitor: the async shell around the watch, the store and the alarm engine.

Contract:
- ``item`` is called by the pipeline's welfare stage on the loop thread, for every item; it
  never blocks and does no I/O: signs and source availability go to the watch at once (before
  ``run`` has restored the saved counts they wait, at most ``MAX_WAITING``).
- ``run`` is a component of the daemon. It waits for the availability recorder to record this
  start (``begun``: the gateway's own outage is then in the store) and for the alarm engine
  to load its open alarms, restores the saved counts without the outages, then looks every
  ``check_every`` seconds: the watch counts, and each verdict goes to the engine as a
  ``welfare_check`` condition of cause ``welfare/<household>`` (``AlarmPort.condition``), so
  the engine's lifecycle, ladders, wording and persistence carry it like any alarm. The counts
  are saved after every look and on the way out, one store transaction each.
- Staff: ``answer`` acknowledges the household's open welfare check (if any), counts as a
  sign of life with the note, and so clears it; ``plan_absence`` and ``cancel_absence``
  change planned absences, saved before they return. Raise ``WelfareError`` for a request
  that cannot be done (unknown household or absence, an absence that ends before it starts).
- A full disk: what the monitor must read back (the saved counts at the start, an absence's
  id) raises ``StoreFullError``, a transient error, so the component restarts with backoff
  and an absence that cannot be saved is refused; saving the counts waits with the store.
- What a crash loses: the signs since the last look (at most ``check_every`` seconds); the
  count then restarts a little early, never late.
"""

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from gateway.alarms.model import UNACKED, Alarm, Condition, Transition
from gateway.alarms.wording import WELFARE_CHECK
from gateway.config.welfare import WelfareConfig
from gateway.core.clock import Clock
from gateway.core.items import Item
from gateway.core.snapshots import WelfareSnapshot
from gateway.reports.history import restarts_since
from gateway.store import Store, StoreFullError
from gateway.welfare import saved
from gateway.welfare.signs import Signs
from gateway.welfare.watch import Absence, Sign, Verdict, Watch

log = logging.getLogger(__name__)
MAX_WAITING = 10_000  # signs waiting for ``run`` to restore the counts
KEEP_ABSENCES_S = 30 * 86400.0  # an ended absence (and its note) is kept this long
T = TypeVar("T")


class WelfareError(Exception):
    """A staff request that cannot be done."""


class AlarmPort(Protocol):
    """What the monitor needs of the alarm engine."""

    @property
    def ready(self) -> asyncio.Event: ...
    def condition(self, cond: Condition) -> None: ...
    def open_alarms(self) -> list[Alarm]: ...
    async def acknowledge(self, alarm_id: str, by: str) -> list[Transition]: ...


def cause(household: str) -> str:
    """The alarm cause of a household's welfare check."""
    return f"welfare/{household}"


@dataclass(frozen=True, slots=True)
class Parts:
    """What the monitor is built around, for the whole run."""

    alarms: AlarmPort
    store: Store
    clock: Clock
    begun: asyncio.Event  # the availability recorder has recorded this start


class WelfareMonitor:
    """Welfare checks of one gateway."""

    def __init__(
        self, cfg: WelfareConfig, zone: str, terminals: Mapping[str, str], parts: Parts
    ) -> None:
        self.cfg, self.parts = cfg, parts
        self.signs = Signs(cfg, terminals)
        now = parts.clock.wall()
        self.watch = Watch(cfg, zone, self.signs.sources, now, max(3 * cfg.check_every, 300.0))
        self.ready = asyncio.Event()
        self.dropped = 0  # signs refused while MAX_WAITING waited for the restore
        self._waiting: list[Item] = []
        self._lock = asyncio.Lock()  # one save at a time, in order

    # -- the pipeline's side (loop thread, no I/O) --------------------------------------

    def item(self, item: Item) -> None:
        """Whatever passes the pipeline: a sign of life, a source's availability, or nothing."""
        if not self.ready.is_set():
            if len(self._waiting) < MAX_WAITING:
                self._waiting.append(item)
            else:
                self.dropped += 1
            return
        signs, statuses = self.signs.of(item)
        for source, online, ts in statuses:
            self.watch.source(source, online, ts)
        for sign in signs:
            self._tell(self.watch.sign(sign))

    # -- life -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Restore, then look every ``check_every`` seconds until cancelled."""
        await self.parts.begun.wait()
        await self.parts.alarms.ready.wait()
        await self.restore()
        try:
            while True:
                await self.check()
                await asyncio.sleep(self.cfg.check_every)
        finally:
            await self.save()  # what was seen since the last look, before the store closes

    async def restore(self) -> None:
        """Load the saved counts and absences; leave the gateway's outages out of the count."""
        now = self.parts.clock.wall()
        rows, absences = await self._read(saved.load)
        since = min((as_of for _, _, as_of, _ in rows), default=now)
        outages = await self._read(functools.partial(restarts_since, since=since))
        self.watch.restore(rows, absences, [(r.down, r.up) for r in outages], now)
        open_checks = {
            a.cause: a for a in self.parts.alarms.open_alarms() if a.kind == WELFARE_CHECK
        }
        for hid, q in self.watch.households.items():
            q.alarmed = cause(hid) in open_checks
        for gone in set(open_checks) - {cause(h) for h in self.watch.households}:
            alarm = open_checks[gone]
            self.parts.alarms.condition(self._condition(
                Verdict(alarm.device, False, now, 0.0, 0.0, None, "household no longer watched")
            ))  # fmt: skip
        self.ready.set()
        waiting, self._waiting = self._waiting, []
        for item in waiting:
            self.item(item)
        log.info("welfare: watching %d households", len(self.watch.households))

    async def check(self) -> None:
        """One look: count the quiet up to now, raise or clear, save."""
        self._tell(self.watch.tick(self.parts.clock.wall()))
        await self.save()

    async def save(self) -> None:
        """Write every household's count, forget what is past its retention."""
        if not self.ready.is_set():
            return
        now = self.parts.clock.wall()
        rows = [(h, q.counted, q.as_of, q.last) for h, q in self.watch.households.items()]
        households = list(self.watch.households)
        for absence_id in self.watch.expired(now - KEEP_ABSENCES_S):
            self.watch.absences.pop(absence_id, None)

        def work(conn: Any) -> None:
            saved.save(conn, rows)
            saved.forget(conn, households, now - KEEP_ABSENCES_S)

        async with self._lock:
            await self.parts.store.transact(work)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work``'s result; ``StoreFullError`` (transient) when a full disk deferred it.

        On a full disk the store keeps a transaction's work in memory to run later and hands
        back None (``gateway.store.ledger``): nothing here can go on without the answer.
        """
        result = await self.parts.store.transact(work)
        if result is None:
            raise StoreFullError("the store could not run a welfare transaction (disk full)")
        return result

    # -- staff ----------------------------------------------------------------------------

    async def answer(self, household: str, by: str, note: str) -> bool:
        """Someone checked on ``household``: acknowledge and clear its welfare check.

        Returns whether a welfare check was open. The answer restarts the window either way.
        """
        self._known(household)
        alarm = next(
            (a for a in self.parts.alarms.open_alarms() if a.cause == cause(household)), None
        )
        if alarm is not None and alarm.state in UNACKED:
            await self.parts.alarms.acknowledge(alarm.id, by)
        now = self.parts.clock.wall()
        self._tell(self.watch.sign(Sign(household, now, "answer", by, note)))
        log.info("welfare: %s answered by %s", household, by)  # not the note: may be personal
        await self.save()
        return alarm is not None

    async def plan_absence(
        self, household: str, start: float, end: float, note: str, by: str
    ) -> Absence:
        """A planned absence of ``household`` (wall times); saved before it returns."""
        self._known(household)
        now = self.parts.clock.wall()
        if not start < end or end <= now:
            raise WelfareError("an absence must end after it starts, and after now")
        work = functools.partial(
            saved.add_absence, household=household, start=start, end=end, note=note, by=by,
            created=now,
        )  # fmt: skip
        async with self._lock:
            try:
                absence_id = await self._read(work)
            except StoreFullError as exc:
                raise WelfareError(f"the absence could not be saved: {exc}") from None
        absence = Absence(absence_id, household, start, end, note, by)
        self._tell(self.watch.add_absence(absence, now))
        log.info("welfare: %s away %s to %s (entered by %s)", household, _iso(start), _iso(end), by)
        return absence

    async def cancel_absence(self, absence_id: int, by: str) -> Absence:
        """Forget a planned absence (back early); the window restarts now."""
        absence = self.watch.cancel_absence(absence_id, self.parts.clock.wall())
        if absence is None:
            raise WelfareError(f"no planned absence {absence_id}")
        async with self._lock:
            await self.parts.store.transact(
                functools.partial(saved.delete_absence, absence_id=absence_id)
            )
        log.info("welfare: absence %d of %s cancelled by %s", absence_id, absence.household, by)
        await self.save()
        return absence

    def view(self) -> list[dict[str, Any]]:
        """Every household as the local API shows it."""
        now = self.parts.clock.wall()
        out = []
        for hid, q in self.watch.households.items():
            away = self.watch.away(hid, now)
            state = (
                "absent" if away else "quiet" if q.alarmed else "paused" if q.paused else "watched"
            )
            out.append({
                "household": hid,
                "flat": q.cfg.flat or None,
                "state": state,
                "quiet_s": round(q.counted),
                "limit_s": self.watch.limit(q.cfg, now),
                "last_sign": None if q.last is None else {
                    "kind": q.last.kind, "source": q.last.source, "at": _iso(q.last.ts)
                },
                "offline": sorted(q.offline),
                "absences": [
                    {"id": a.id, "from": _iso(a.start), "until": _iso(a.end), "note": a.note,
                     "by": a.by}
                    for a in sorted(self.watch.absences.values(), key=lambda a: a.start)
                    if a.household == hid
                ],
            })  # fmt: skip
        return out

    def snapshot(self) -> WelfareSnapshot:
        """Counts for health and metrics."""
        now = self.parts.clock.wall()
        qs = self.watch.households.values()
        return WelfareSnapshot(
            watched=len(qs),
            quiet=sum(1 for q in qs if q.alarmed),
            absent=sum(1 for h in self.watch.households if self.watch.away(h, now)),
            paused=sum(1 for q in qs if q.paused),
        )

    # -- to the alarm engine --------------------------------------------------------------

    def _known(self, household: str) -> None:
        if household not in self.watch.households:
            raise WelfareError(f"no watched household {household!r}")

    def _tell(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            self.parts.alarms.condition(self._condition(v))

    def _condition(self, v: Verdict) -> Condition:
        h = self.watch.households.get(v.household)
        hours = f"{v.quiet / 3600:.1f}"
        facts = {"quiet_h": hours}
        if v.last is not None:
            facts |= {"last_kind": v.last.kind, "last_source": v.last.source,
                      "last_ts": repr(v.last.ts)}  # fmt: skip
        last = "none since the watch began" if v.last is None else (
            f"{v.last.kind} {v.last.source} at {_iso(v.last.ts)}"
        )  # fmt: skip
        message = (
            f"no sign of life for {hours} h (limit {v.limit / 3600:g} h); last sign: {last}"
            if v.active
            else v.why
        )
        ladder = self.cfg.ladder if h is None or h.cfg.ladder is None else h.cfg.ladder
        return Condition(
            cause=cause(v.household), rule="welfare", kind=WELFARE_CHECK, device=v.household,
            active=v.active, severity=self.cfg.severity, latched=False, ladder=ladder,
            message=message, ts=v.ts, value=round(v.quiet / 3600, 1), facts=facts,
        )  # fmt: skip


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
