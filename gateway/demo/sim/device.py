"""Simulated devices and their values: what each point holds and how it drifts.

Contract:
- ``SimulatedDevice`` is one unit id (1-247) and its points; disabled points are not served;
  names are unique, ``functions`` and ``initial`` name existing points, an initial value lies
  inside its point's range, and no two enabled points share an address of one table
  (``ValueError`` otherwise).
- ``PointState`` holds a point's current value as a client would decode it and the registers
  last written. ``next_value`` gives the next tick's value: the caller's function of the tick
  number if there is one (as returned, even outside the range), otherwise a bounded,
  mean-reverting random walk that stays inside the point's range after encoding; points
  without a range keep their value; bool points flip now and then.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.loader import load_profile
from gateway.config.modbus import PointConfig
from gateway.demo.sim.codec import INT_LIMITS, decode_registers, encode_value

ValueFunction = Callable[[int], float]
"""Scaled value of a point from the tick number (0 at start); bool points use its truthiness."""

# Where the random walk starts, by unit, when the value lies inside the point's range:
# ordinary weather in a residential community. Other units start a quarter into the range.
_TYPICAL: dict[str, float] = {
    "degC": 22.0,
    "%RH": 55.0,
    "ug/m3": 35.0,
    "dB(A)": 50.0,
    "ppm": 450.0,
    "kPa": 101.3,
    "hPa": 1013.0,
    "lux": 800.0,
}
# One random-walk step has a standard deviation of _STEP of the range, and is pulled back by
# _REVERT of the distance to the start value, so the walk settles about 5 steps (1% of the
# range) around the start: temperature +-1.2 degC, PM2.5 +-10 ug/m3, noise +-1 dB(A).
_STEP = 0.002
_REVERT = 0.02
_FLIP = 0.02  # probability per tick that a free-running bool point changes state


@dataclass
class SimulatedDevice:
    """One simulated Modbus device: a unit id and the points it serves.

    Attributes:
        unit_id: Modbus unit (slave) id, 1-247.
        points: Points to serve; disabled ones (``enabled: false``) are left out.
        functions: Optional value function per point name, replacing the random walk.
        initial: Optional start value per point name, inside its range; the random walk
            keeps returning towards it (default: a typical value for the unit, or a quarter
            into the range).
    """

    unit_id: int
    points: list[PointConfig]
    functions: dict[str, ValueFunction] = field(default_factory=dict)
    initial: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_profile(
        cls,
        unit_id: int,
        profile: Path,
        functions: Mapping[str, ValueFunction] | None = None,
        initial: Mapping[str, float] | None = None,
    ) -> SimulatedDevice:
        """A device serving every point of the profile file ``profile``.

        Raises:
            ConfigError: the profile does not load (see ``load_profile``).
        """
        data = load_profile(profile)
        points = [PointConfig.model_validate(p) for p in data["points"]]
        return cls(unit_id, points, dict(functions or {}), dict(initial or {}))

    def __post_init__(self) -> None:
        if not 1 <= self.unit_id <= 247:
            raise ValueError(f"unit id {self.unit_id}: must be 1-247")
        names = [p.name for p in self.points]
        if len(set(names)) != len(names):
            raise ValueError(f"unit {self.unit_id}: duplicate point names in {names}")
        for extra in (self.functions, self.initial):
            unknown = set(extra) - set(names)
            if unknown:
                raise ValueError(f"unit {self.unit_id}: no points named {sorted(unknown)}")
        for p in self.points:
            start = self.initial.get(p.name)
            if start is not None and p.range is not None and not p.range[0] <= start <= p.range[1]:
                raise ValueError(f"{p.name}: initial value {start} is outside {list(p.range)}")
        used: dict[tuple[str, int], str] = {}
        for p in self.active_points:
            for addr in range(p.address, p.address + p.count):
                other = used.setdefault((p.table, addr), p.name)
                if other != p.name:
                    raise ValueError(
                        f"unit {self.unit_id}: {p.name} overlaps {other} at {p.table} {addr}"
                    )

    @property
    def active_points(self) -> list[PointConfig]:
        """The points served: the enabled ones."""
        return [p for p in self.points if p.enabled]


class PointState:
    """Current value of one simulated point, and its random walk."""

    def __init__(self, point: PointConfig, function: ValueFunction | None, start: float | None):
        self.point = point
        self.function = function
        self.held = False
        self.bounds = _walk_bounds(point)
        if start is None:
            start = _typical_start(point, self.bounds)
        self.start = start
        self.value = start  # the value as decoded from the registers last written
        self.registers: list[int] | list[bool] = []  # the registers last written

    def next_value(self, tick: int, rng: random.Random) -> float:
        if self.function is not None:
            return float(self.function(tick))
        if self.point.type == "bool":
            return 1.0 - self.value if rng.random() < _FLIP else self.value
        if self.bounds is None:
            return self.value
        low, high = self.bounds
        span = high - low
        value = self.value + rng.gauss(0.0, _STEP * span) + _REVERT * (self.start - self.value)
        if value > high:  # reflect at the edges
            value = 2 * high - value
        if value < low:
            value = 2 * low - value
        return self.fit(min(max(value, low), high))

    def fit(self, value: float) -> float:
        """``value``, pulled towards the middle until its encoding decodes inside the range."""
        if self.bounds is None:
            return value
        low, high = self.bounds
        middle = (low + high) / 2
        for shrink in (0.0, 1e-9, 1e-6, 1e-3, 1e-2, 1e-1, 1.0):
            candidate = value + (middle - value) * shrink
            decoded = decode_registers(self.point, encode_value(self.point, candidate))
            if low <= decoded <= high:
                return candidate
        raise ValueError(f"{self.point.name}: no value inside {self.bounds} fits {self.point.type}")


def _walk_bounds(point: PointConfig) -> tuple[float, float] | None:
    """The point's range, narrowed to what its type can carry; None without a range."""
    if point.range is None or point.type == "bool":
        return None
    low, high = point.range
    if point.type != "float32":
        raw_low, raw_high = INT_LIMITS[point.type]
        ends = sorted((raw_low * point.scale + point.offset, raw_high * point.scale + point.offset))
        low, high = max(low, ends[0]), min(high, ends[1])
    if low > high:
        raise ValueError(f"{point.name}: range {point.range} cannot be encoded as {point.type}")
    return low, high


def _typical_start(point: PointConfig, bounds: tuple[float, float] | None) -> float:
    if point.type == "bool":
        return 0.0
    if bounds is None:
        return point.offset  # raw 0
    low, high = bounds
    typical = _TYPICAL.get(point.unit)
    if typical is not None and low <= typical <= high:
        return typical
    return low + (high - low) / 4
