"""Guess what an unknown unit is from the probe registers of the profiles (pure).

A profile's ``probe`` (``gateway.config.modbus.ProbeCheck``) names a few values and what makes
each match: a plausible ``range``, an ``equals`` (a model or id register; ``unit``: the unit
id asked) or ``at_least`` another probed point (PM10 never below PM2.5).

Contract:
- ``reads`` lists the reads every probe needs, each register run once, in the order of the
  profiles: a scan asks a unit each of them once, however many profiles check it.
- ``guess`` judges one profile from the answers: a check whose read was refused or not
  answered is ``unanswered`` (it neither counts for nor against); a value outside its range,
  not equal, below its ``at_least`` point, or not a number rules the profile out. A profile
  with nothing matched is no guess either.
- A guess's score: 1 for each value in its range, 1 more for each ``at_least`` that holds,
  ``EQUALS_WEIGHT`` for each ``equals`` that holds (an id or model value says more about a
  device than a plausible reading does).
- ``rank`` orders guesses: highest score first, then fewest unanswered checks, then by name,
  so equal evidence ranks the same way on every run.
"""

import math
from collections.abc import Iterable, Mapping, Sequence

from drivers.modbus.codec import decode
from gateway.config.modbus import PointConfig, ProbeCheck, ProfileConfig
from gateway.core.commission import Guess

EQUALS_WEIGHT = 3
Read = tuple[str, int, int]  # table, address, count
Answers = Mapping[Read, Sequence[int] | None]  # None: refused or not answered


def read_of(point: PointConfig) -> Read:
    """The read that returns ``point``'s registers (or bit) alone."""
    return (point.table, point.address, point.count)


def reads(profiles: Iterable[ProfileConfig]) -> list[Read]:
    """Every read the profiles' probes need, each once, in order."""
    out: dict[Read, None] = {}
    for profile in profiles:
        for check in profile.probe or ():
            out.setdefault(read_of(profile.probe_point(check)))
    return list(out)


def _value(point: PointConfig, registers: Sequence[int]) -> float:
    raw = float(bool(registers[0])) if point.type == "bool" else float(decode(point, registers))
    return round(raw * point.scale + point.offset, 6)


def _fits(check: ProbeCheck, point: PointConfig, value: float, unit: int) -> bool:
    if not math.isfinite(value):
        return False
    if check.equals is not None:
        return value == (unit if check.equals == "unit" else check.equals)
    bounds = check.range if check.range is not None else point.range
    return bounds is None or bounds[0] <= value <= bounds[1]


def guess(profile: ProfileConfig, unit: int, answers: Answers) -> Guess | None:
    """How well ``profile``'s probe fits what ``unit`` answered; None if it is ruled out or
    nothing matched (see the module docstring)."""
    checks = profile.probe or []
    values: dict[str, float] = {}
    score = matched = unanswered = 0
    for check in checks:
        point = profile.probe_point(check)
        registers = answers.get(read_of(point))
        if registers is None:
            unanswered += 1
            continue
        value = _value(point, registers)
        if not _fits(check, point, value, unit):
            return None
        if check.point is not None:
            values[check.point] = value
        score += EQUALS_WEIGHT if check.equals is not None else 1
        matched += 1
    for check in checks:  # every value is known now, whichever order the checks are in
        if check.at_least is None or check.point not in values:
            continue
        floor = values.get(check.at_least)
        if floor is None:
            continue  # the other point was not answered: the relation says nothing
        if values[check.point] < floor:
            return None
        score += 1
    if not matched:
        return None
    return Guess(profile.name, score, matched, len(checks), unanswered)


def rank(guesses: Iterable[Guess | None]) -> tuple[Guess, ...]:
    """The guesses that are guesses, best first (see the module docstring)."""
    return tuple(
        sorted(
            (g for g in guesses if g is not None),
            key=lambda g: (-g.score, g.unanswered, g.profile),
        )
    )
