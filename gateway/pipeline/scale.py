"""Pure pipeline stages: raw decoded values to readings. No I/O, no clock, no logging.

A point is anything with a name, a unit, ``scale``, ``offset`` and a physical ``range``: a
Modbus point (``gateway.config.modbus.PointConfig``) or an mqtt_json point
(``gateway.config.mqtt_json.JsonPointConfig``); both are scaled and judged alike.
"""

import math
from typing import Protocol

from gateway.core.messages import Quality, Reading, Value


class Scaled(Protocol):
    """What scaling a raw value needs to know of its point."""

    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def scale(self) -> float: ...
    @property
    def offset(self) -> float: ...
    @property
    def range(self) -> tuple[float, float] | None: ...


def to_reading(point: Scaled, raw: Value | None) -> Reading:
    """Scale a decoded raw value and judge its quality.

    ``None`` (not read) stays ``None`` with ``comm_error``; NaN or infinity, which a float32
    register can hold, is ``None`` with ``bad``; a value outside the point's physical range is
    kept but marked ``bad`` so it is never mistaken for good data.
    """
    if raw is None:
        return Reading(point.name, None, point.unit, Quality.COMM_ERROR)
    if isinstance(raw, bool | str):
        return Reading(point.name, raw, point.unit, Quality.GOOD)
    if isinstance(raw, float) and not math.isfinite(raw):
        return Reading(point.name, None, point.unit, Quality.BAD)
    value: int | float = raw
    if point.scale != 1.0 or point.offset != 0.0:
        value = round(raw * point.scale + point.offset, 6)
    quality = Quality.GOOD
    if point.range is not None and not point.range[0] <= value <= point.range[1]:
        quality = Quality.BAD
    return Reading(point.name, value, point.unit, quality)
