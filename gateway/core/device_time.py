"""A device's own clock: reading the time a payload carries, and whether to believe it.

Contract:
- ``read_time(value, fmt, naive_offset)`` turns a payload's time into epoch seconds, or None
  when it cannot be read: ``epoch_s`` and ``epoch_ms`` take a JSON number (not a boolean,
  within +-1e11 s, finite); ``iso8601`` takes a string of at most 40 characters that
  ``datetime.fromisoformat`` reads. An ISO time without a zone is read in ``naive_offset``
  (``+08:00``), or not at all when ``naive_offset`` is None.
- ``plausible(device_ts, gateway_ts)`` is the device time if it lies within ``MAX_SKEW`` of
  the arrival time, else None: a clock reset to 2000 or set to 9999 is no time at all.
- Pure: no I/O, no clock reads, never raises.
"""

import math
from datetime import datetime, timedelta, timezone

MAX_SKEW = 86400.0  # seconds: a device time further off than this is not believed
TIME_FORMATS = ("epoch_s", "epoch_ms", "iso8601")


def plausible(device_ts: float | None, gateway_ts: float) -> float | None:
    """``device_ts`` if it lies within ``MAX_SKEW`` of the arrival time, else None."""
    if device_ts is None or abs(device_ts - gateway_ts) > MAX_SKEW:
        return None
    return device_ts


def read_time(value: object, fmt: str, naive_offset: str | None) -> float | None:
    """Epoch seconds of a device time in ``fmt``; None if it cannot be read."""
    if fmt == "iso8601":
        if not isinstance(value, str) or len(value) > 40:
            return None
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
        if when.tzinfo is None:
            if naive_offset is None:
                return None
            sign = -1 if naive_offset.startswith("-") else 1
            hours, minutes = naive_offset[1:].split(":")
            delta = timedelta(hours=int(hours), minutes=int(minutes))
            when = when.replace(tzinfo=timezone(sign * delta))
        return when.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    scale = 1000.0 if fmt == "epoch_ms" else 1.0
    if not -1e11 * scale < value < 1e11 * scale:  # also NaN; before float(): no overflow
        return None
    ts = float(value) / scale
    return ts if math.isfinite(ts) else None
