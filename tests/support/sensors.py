"""Buses of the shipped sensor classes for commissioning tests: which unit id holds what.

``sensors`` builds one simulated device per unit id from a shipped profile, holding fixed
values (no ticks needed); ``only_they_answer`` silences every other unit id, as on a real
RS-485 line (pymodbus's server answers unknown ids with exception 4, LIBRARIES.md P9).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config.loader import BUILTIN_PROFILES
from gateway.demo.sim import SimulatedDevice, Simulator

# the four shipped classes on one line, each at values a residential community reads
LAYOUT = {2: "th-rs485", 5: "pm-laser-rs485", 9: "noise-rs485", 12: "env-station-rs485"}
TYPICAL: dict[str, dict[str, float]] = {
    "th-rs485": {"humidity": 55.0, "temperature": 22.0},
    "pm-laser-rs485": {"pm25": 35, "pm10": 65},
    "noise-rs485": {"noise": 54.0},
    "env-station-rs485": {"temperature": 22.0, "humidity": 55.0, "pressure": 101.3},
}


def sensors(
    layout: Mapping[int, str] = LAYOUT, values: Mapping[int, Mapping[str, float]] | None = None
) -> list[SimulatedDevice]:
    """A device per unit id serving its profile's points, at ``TYPICAL`` values unless
    ``values`` (by unit id) says otherwise."""
    values = values or {}
    return [
        SimulatedDevice.from_profile(
            unit,
            BUILTIN_PROFILES / f"{name}.yaml",
            initial={**TYPICAL[name], **values.get(unit, {})},
        )
        for unit, name in layout.items()
    ]


def only_they_answer(sim: Simulator) -> Simulator:
    """Silence every unit id no simulated device has; returns ``sim``."""
    sim.silent = set(range(1, 248)) - set(sim.devices)
    return sim
