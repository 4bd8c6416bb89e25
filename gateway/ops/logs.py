"""Logging to stderr for journald: readable on a terminal, one JSON object per line otherwise.

Contract:
- ``setup`` sends the root logger to one stderr handler, JSON lines unless stderr is a
  terminal, with a ``RepeatFilter`` on it.
- ``RepeatFilter``: a WARNING or ERROR repeated identically (same logger, level, message
  text and exception type) passes ``burst`` times per ``window`` seconds; the rest are
  dropped and counted (``suppressed``, in total). The next one that passes carries how many
  of its kind were dropped before it as the ``suppressed`` field. So a fault that repeats
  thousands of times a second (an accept loop out of file descriptors) writes a few lines a
  window, never the disk full. INFO and below, and CRITICAL (alarms logged by the ``log``
  channel among them), are never dropped.
"""

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

_STD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
MAX_FIELD = 500  # characters kept of any value (payloads are truncated, never dumped whole)
BURST = 5  # identical warnings or errors passed per window
WINDOW = 60.0  # seconds
_MAX_KINDS = 1024  # distinct repeated records tracked at once (bounds memory)

_Key = tuple[str, int, str, str]


class RepeatFilter(logging.Filter):
    """Drops repeats of one warning or error beyond ``burst`` per ``window`` seconds.

    ``suppressed`` counts every record dropped since start.
    """

    def __init__(
        self,
        burst: int = BURST,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self.suppressed = 0  # records dropped since start
        self._seen: dict[_Key, list[float | int]] = {}  # key -> [window start, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if not logging.WARNING <= record.levelno < logging.CRITICAL:
            return True
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        key = (record.name, record.levelno, record.getMessage(), exc)
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            if seen is None and len(self._seen) >= _MAX_KINDS:
                self._forget(now)
            dropped = 0 if seen is None else int(seen[2])
            self._seen[key] = [now, 1, 0]
            if dropped:
                record.suppressed = dropped
            return True
        if seen[1] < self.burst:
            seen[1] += 1
            return True
        seen[2] += 1
        self.suppressed += 1
        return False

    def _forget(self, now: float) -> None:
        for key in [k for k, s in self._seen.items() if now - s[0] >= self.window]:
            del self._seen[key]
        if len(self._seen) >= _MAX_KINDS:  # all recent: forget the oldest half
            for key in sorted(self._seen, key=lambda k: self._seen[k][0])[: _MAX_KINDS // 2]:
                del self._seen[key]


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage()[:MAX_FIELD],
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = (
                    value if isinstance(value, int | float | bool) else str(value)[:MAX_FIELD]
                )
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Send the root logger to stderr; JSON unless stderr is a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
