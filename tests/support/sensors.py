"""Buses of the shipped sensor classes for commissioning tests: which unit id holds what.

``sensors`` builds one simulated device per unit id from a shipped profile, holding fixed
values (no ticks needed); ``only_they_answer`` silences every other unit id, as on a real
RS-485 line (pymodbus's server answers unknown ids with exception 4, LIBRARIES.md P9).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


def crossed(values: Mapping[int, Mapping[str, float]] | None = None) -> list[SimulatedDevice]:
    """The crossed pair as wired: the humidity sensor answers unit 2, the noise sensor unit 3
    (at 25.0 %RH and 105.0 dB(A), which each read as the other is outside its range)."""
    wired = {2: {"humidity": 25.0}, 3: {"noise": 105.0}}
    return sensors({2: "th-rs485", 3: "noise-rs485"}, {**wired, **(values or {})})


def as_configured(doc: dict[str, Any], bus: str) -> dict[str, Any]:
    """``doc`` with the crossed pair as the installer configured it: ``noise-1`` on unit 2,
    ``th-1`` on unit 3, both on ``bus``."""
    devices = [
        {"kind": "modbus", "id": "noise-1", "bus": bus, "unit_id": 2, "profile": "noise-rs485"},
        {"kind": "modbus", "id": "th-1", "bus": bus, "unit_id": 3, "profile": "th-rs485"},
    ]
    return {**doc, "devices": devices}
