"""The welfare watch: per household, quiet time counted since the last sign of life (pure).

Contract:
- Each household counts ``counted``, the seconds of quiet since its last sign of life (or
  since its window restarted), up to wall time ``as_of``. Time is counted only by ``tick``
  and only while the household is watched: not during a planned absence, and not while any
  of its sources (a door terminal, a button, a meter) is offline, since a sign could not have
  been seen then. A step longer than ``max_step`` between two looks (the gateway stalled, or
  its clock jumped) counts as ``max_step`` at most. The gateway's own outages never count:
  ``restore`` leaves them out (``outages``: the availability recorder's restarts).
- A household whose counted quiet reaches its limit gets one ``Verdict`` (active); the limit
  is the household's ``quiet``, or that of the first window of ``windows`` the local time of
  the look falls in. The next sign of life, an answer by staff, or the start of a planned
  absence gives one ``Verdict`` (inactive). A sign or an absence's end restarts the count.
- Pure: no I/O, no asyncio, no logging, no clock reads; times arrive as arguments.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.config.welfare import HouseholdConfig, WelfareConfig

MAX_STEP = 300.0  # seconds one look may count at most


@dataclass(frozen=True, slots=True)
class Sign:
    """One sign of life of one household."""

    household: str
    ts: float  # wall time
    kind: str  # door | button | point | answer
    source: str  # the door, the device, or who answered
    note: str = ""  # an answer's note: visited, away from home...


@dataclass(frozen=True, slots=True)
class Absence:
    """A planned absence: no welfare check from ``start`` to ``end`` (wall times)."""

    id: int
    household: str
    start: float
    end: float
    note: str
    by: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """A household became quiet for too long (``active``), or it is over."""

    household: str
    active: bool
    ts: float
    quiet: float  # seconds counted
    limit: float  # the limit that was reached
    last: Sign | None
    why: str  # for an inactive verdict: the sign, the answer or the absence that ended it


@dataclass(slots=True)
class Quiet:
    """What the watch keeps about one household."""

    cfg: HouseholdConfig
    sources: frozenset[str]
    as_of: float
    counted: float = 0.0
    last: Sign | None = None
    offline: set[str] = field(default_factory=set)
    alarmed: bool = False

    @property
    def paused(self) -> bool:
        """A source is offline: the quiet is not counted."""
        return bool(self.offline)


def in_window(minute: int, start: int, end: int) -> bool:
    """Whether minute of day ``minute`` lies in [start, end), a window that may wrap midnight."""
    return start <= minute < end if start <= end else minute >= start or minute < end


class Watch:
    """Every watched household and its planned absences."""

    def __init__(
        self,
        cfg: WelfareConfig,
        zone: str,
        sources: Mapping[str, frozenset[str]],
        now: float,
        max_step: float = MAX_STEP,
    ) -> None:
        """``sources``: household id -> the devices its signs come from (offline pauses it)."""
        self.zone = ZoneInfo(zone)
        self.max_step = max_step
        self.households = {
            h.id: Quiet(h, sources.get(h.id, frozenset()), now) for h in cfg.households
        }
        self.absences: dict[int, Absence] = {}

    # -- restart ----------------------------------------------------------------------------

    def restore(
        self,
        saved: Iterable[tuple[str, float, float, Sign | None]],
        absences: Iterable[Absence],
        outages: Sequence[tuple[float, float]],
        now: float,
    ) -> None:
        """Carry counts across a restart: ``saved`` is (household, counted, as_of, last).

        The time from ``as_of`` to ``now`` counts except where it overlaps ``outages`` (the
        gateway's own, from the availability recorder), and at most ``max_step`` of it: the
        part that was not an outage is the little while before a crash, after the last save.
        """
        for hid, counted, as_of, last in saved:
            q = self.households.get(hid)
            if q is None:
                continue
            gap = max(0.0, now - as_of) - sum(
                max(0.0, min(up, now) - max(down, as_of)) for down, up in outages
            )
            q.counted, q.last, q.as_of = counted + min(max(0.0, gap), self.max_step), last, now
        for a in absences:
            if a.household in self.households:
                self.absences[a.id] = a

    # -- what happens -----------------------------------------------------------------------

    def sign(self, sign: Sign) -> list[Verdict]:
        """A sign of life: the count starts over; an open welfare check is over."""
        q = self.households.get(sign.household)
        if q is None:
            return []
        if q.last is not None and sign.ts < q.last.ts:
            return []  # older than what is known already
        q.last, q.counted, q.as_of = sign, 0.0, max(q.as_of, sign.ts)
        return self._over(q, sign.ts, _said(sign))

    def source(self, source: str, online: bool, ts: float) -> None:
        """A source's availability changed; quiet counts only while all are online."""
        for q in self.households.values():
            if source not in q.sources:
                continue
            if online:
                if q.offline:
                    q.offline.discard(source)
                    if not q.offline:
                        q.as_of = max(q.as_of, ts)  # the offline time is not counted
            else:
                if not q.offline:
                    self._count(q, ts)
                q.offline.add(source)

    def add_absence(self, absence: Absence, now: float) -> list[Verdict]:
        """A planned absence; one that has begun ends an open welfare check at once."""
        self.absences[absence.id] = absence
        return self.tick(now)

    def cancel_absence(self, absence_id: int, now: float) -> Absence | None:
        """Forget an absence (it ends now if it had begun): the count starts over."""
        absence = self.absences.pop(absence_id, None)
        if absence is not None and absence.start <= now < absence.end:
            q = self.households[absence.household]
            q.counted, q.as_of = 0.0, now
        return absence

    def tick(self, now: float) -> list[Verdict]:
        """Count the quiet up to ``now``; verdicts for households that crossed a line."""
        out: list[Verdict] = []
        for q in self.households.values():
            away = self.away(q.cfg.id, now)
            if away is not None:
                q.counted, q.as_of = 0.0, max(q.as_of, now)  # the window restarts after it
                out += self._over(q, now, f"planned absence until {_iso(away.end)}")
                continue
            self._count(q, now)
            limit = self.limit(q.cfg, now)
            if not q.alarmed and not q.paused and q.counted >= limit:
                q.alarmed = True
                out.append(Verdict(q.cfg.id, True, now, q.counted, limit, q.last, ""))
        return out

    def _count(self, q: Quiet, now: float) -> None:
        if not q.paused:
            ends = [
                a.end
                for a in self.absences.values()
                if a.household == q.cfg.id and q.as_of < a.end <= now
            ]
            start = max([q.as_of, *ends])  # an absence that ended since: counted from its end
            q.counted += min(max(0.0, now - start), self.max_step)
        q.as_of = max(q.as_of, now)

    def _over(self, q: Quiet, ts: float, why: str) -> list[Verdict]:
        if not q.alarmed:
            return []
        q.alarmed = False
        return [Verdict(q.cfg.id, False, ts, q.counted, self.limit(q.cfg, ts), q.last, why)]

    # -- reading ----------------------------------------------------------------------------

    def limit(self, cfg: HouseholdConfig, now: float) -> float:
        """The quiet limit at wall time ``now``: a window's, or the household's."""
        local = datetime.fromtimestamp(now, self.zone)
        minute = local.hour * 60 + local.minute
        for w in cfg.windows:
            if in_window(
                minute, w.start.hour * 60 + w.start.minute, w.end.hour * 60 + w.end.minute
            ):
                return float(w.quiet)
        return float(cfg.quiet)

    def away(self, household: str, now: float) -> Absence | None:
        """The planned absence of ``household`` at ``now``, if there is one."""
        return next(
            (
                a
                for a in sorted(self.absences.values(), key=lambda a: a.end, reverse=True)
                if a.household == household and a.start <= now < a.end
            ),
            None,
        )

    def expired(self, before: float) -> list[int]:
        """Absences that ended before ``before`` (forgotten by the caller's retention)."""
        return [a.id for a in self.absences.values() if a.end < before]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _said(sign: Sign) -> str:
    if sign.kind == "answer":
        return (
            f"answered by {sign.source}: {sign.note}" if sign.note else f"answered by {sign.source}"
        )
    return f"sign of life: {sign.kind} {sign.source}"
