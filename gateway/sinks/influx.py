"""The InfluxDB sink: telemetry rows of the store as time series, over ``/api/v2/write``.

Contract:
- Its own task and its own store cursor: a dead or slow InfluxDB never delays the MQTT sink or
  alarms; its backlog only keeps rows on disk (within the store's quota) until it confirms them.
- Takes only the telemetry lane: the store is opened with ``lanes={"influx": [TELEMETRY]}``,
  so alarm and event rows neither reach this sink nor wait for it.
- The store does the batching: ``batch_size`` rows per request through the async API of
  influxdb-client (``InfluxDBClientAsync``), which neither buffers nor retries (P19). The
  client's batching ``WriteApi`` is not used: it drops data when the server is down.
  The package is heavy (about 40 MiB); it is imported when the sink first runs, never when
  the gateway is imported.
- The cursor moves only over rows that were written (a 2xx answer) or dead-lettered, in order.
- One row (one device's poll) becomes one line, written here from the row's typed points
  (``line``): measurement ``cfg.measurement``, tags ``site``, ``gateway``, ``device``, one
  field per point. Only points with quality "good" and a numeric
  value are written (bool as 0/1); ``None``, strings, non-finite floats and points of any other
  quality are skipped and counted. Units are not written.
- Timestamps are the row's wall-clock time in milliseconds, made unique per series (per
  device): the sink keeps the last millisecond it wrote per device and, when a row's stamp is
  not strictly greater (two polls in one millisecond, or the wall clock stepped back, F42),
  writes it at last + 1 ms. So a clock step never overwrites an earlier point silently; it
  shifts the stamps of the stepped-back rows forward until the clock catches up. A retried
  batch gets the same stamps (the per-device state is only advanced after a successful
  write), so a retry after a lost answer overwrites instead of duplicating. The state lives in
  memory: after a restart, a series continues from the rows' own stamps.
- Errors: no connection, a timeout or a 5xx -> retry the same batch with capped, jittered
  backoff (``retry_max``), cursor unchanged; 429/503 wait for Retry-After (capped) if given;
  400 (a bad line) -> split the batch in halves until the bad row is alone, dead-letter it
  (counted, logged once with its row id and device, kept in ``dead_letter``) and go past it;
  413 -> halve the batch size for this and every later batch (down to one row; a single row
  still too large is dead-lettered).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config.base import read_secret
from gateway.config.influx import InfluxConfig
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock
from gateway.core.contract import Identity
from gateway.core.messages import Lane, Quality
from gateway.core.snapshots import SinkSnapshot
from gateway.store.outbox import Row, Store

log = logging.getLogger(__name__)
dead_log = logging.getLogger("gateway.influx_dead_letter")

DEAD_LETTER_KEEP = 100  # dead-lettered rows kept in memory for inspection
RETRY_AFTER_STATUS = (429, 503)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A row the server refused; kept for inspection."""

    row_id: int
    device: str
    ts: float
    line: str  # the line protocol sent
    error: str


@dataclass(slots=True)
class _Batch:
    """Rows converted for one request."""

    lines: list[str] = field(default_factory=list)
    fields: int = 0
    skipped: int = 0
    last_ms: dict[str, int] = field(default_factory=dict)


class _Rejected(Exception):
    """The server refused a write for good (HTTP 4xx)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class _Retry(Exception):
    """A write failed for now; ``after`` is the server's Retry-After in seconds, if any."""

    def __init__(self, text: str, after: float | None = None) -> None:
        super().__init__(text)
        self.after = after


def _write_precision_ms() -> Any:
    from influxdb_client.domain.write_precision import WritePrecision

    return WritePrecision.MS


def _numeric(value: object) -> int | float | None:
    """The value as written: int, finite float, bool as 0/1; None for anything else."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


# line protocol escapes, as influxdb-client writes them
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)


def line(
    measurement: str,
    tags: Sequence[tuple[str, str]],
    fields: Sequence[tuple[str, int | float]],
    ms: int,
) -> str:
    """One line of line protocol: tags and fields sorted by key, empty tags left out.

    Ints are written as integers (``1i``), floats as Python's shortest round-trip text with a
    whole number's ``.0`` trimmed, the time in milliseconds; a later field of the same name
    wins. ``fields`` must be finite numbers (``_numeric``).
    """
    tag_text = "".join(
        f",{k.translate(_ESCAPE_KEY)}={_tag_value(v)}" for k, v in sorted(tags) if k and v
    )
    parts = []
    for name, value in sorted(dict(fields).items()):
        if isinstance(value, float):
            text = repr(value)
            text = text[:-2] if text.endswith(".0") else text
        else:
            text = f"{value}i"
        parts.append(f"{name.translate(_ESCAPE_KEY)}={text}")
    return f"{measurement.translate(_ESCAPE_MEASUREMENT)}{tag_text} {','.join(parts)} {ms}"


def _tag_value(value: str) -> str:
    out = value.translate(_ESCAPE_KEY)
    return out + " " if out.endswith("\\") else out


def _retry_after(headers: Any) -> float | None:
    """Seconds from a ``Retry-After: <seconds>`` header (HTTP dates are not honoured)."""
    if not headers:
        return None
    try:
        raw = headers.get("Retry-After")
    except AttributeError:
        return None
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


class InfluxSink:
    """Writes the store's telemetry to an InfluxDB-compatible server."""

    name = "influx"

    def __init__(self, cfg: InfluxConfig, ident: Identity, store: Store, clock: Clock) -> None:
        self.cfg = cfg
        self.ident = ident
        self.store = store
        self.clock = clock
        self.written = 0  # fields (points) the server accepted
        self.rows_written = 0  # rows (device readings) the server accepted
        self.skipped = 0  # points not written: not numeric, or quality not "good"
        self.dead_lettered = 0  # rows refused by the server
        self.retries = 0  # failed writes retried
        self.last_error = ""
        self.batch_size = cfg.batch_size  # halved on 413
        self.connected = asyncio.Event()  # the last write succeeded
        self.dead_letter: deque[DeadLetter] = deque(maxlen=DEAD_LETTER_KEEP)
        self._token = read_secret(cfg.token_file) if cfg.token_file else None
        self._last_ms: dict[str, int] = {}  # per device: the last timestamp written
        self._backoff = Backoff(min(1.0, cfg.retry_max), cfg.retry_max)
        self._failing = False

    def snapshot(self) -> SinkSnapshot:
        """Whether the last write succeeded, and the rows written, dead-lettered, retried."""
        return SinkSnapshot(
            connected=self.connected.is_set(),
            last_error=self.last_error,
            delivered=self.rows_written,
            dead_lettered=self.dead_lettered,
            retries=self.retries,
            dead_by_lane={Lane.TELEMETRY.label: self.dead_lettered},
        )

    async def run(self) -> None:
        """Drain the telemetry lane to the server: until cancelled."""
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self.store.rewind(self.name)  # a restarted task re-reads what was not confirmed
        async with InfluxDBClientAsync(
            url=self.cfg.url,
            token=self._token or "",  # empty: no Authorization header
            org=self.cfg.org,
            timeout=int(self.cfg.timeout * 1000),
        ) as client:
            api = client.write_api()
            while True:
                rows = await self.store.fetch(self.name, self.batch_size)
                if not rows:
                    await self.store.wait_for_rows(self.name)
                    continue
                await self._deliver(api, rows)

    async def _deliver(self, api: Any, rows: Sequence[Row]) -> None:
        """Write ``rows`` in chunks of ``batch_size``, in order, confirming each chunk."""
        start = 0
        while start < len(rows):
            chunk = rows[start : start + self.batch_size]
            await self._send(api, chunk)
            start += len(chunk)

    async def _send(self, api: Any, rows: Sequence[Row]) -> None:
        """Write ``rows`` until written or dead-lettered, then confirm them to the store."""
        while True:
            batch = self._convert(rows)
            if not batch.lines:
                await self._confirm(rows, batch)
                return
            try:
                await self._write(api, batch.lines)
            except _Retry as exc:
                await self._pause(exc)
                continue
            except _Rejected as exc:
                if exc.status == 413 and len(rows) > 1:
                    self.batch_size = min(self.batch_size, max(1, len(rows) // 2))
                    log.warning(
                        "influx: request too large (%d rows); batch size now %d",
                        len(rows),
                        self.batch_size,
                    )
                if len(rows) == 1:
                    self._dead(rows[0], batch.lines[0], str(exc))
                    await self._confirm(rows, batch)
                    return
                half = len(rows) // 2
                await self._send(api, rows[:half])
                await self._send(api, rows[half:])
                return
            self._last_ms.update(batch.last_ms)
            self.written += batch.fields
            self.rows_written += len(batch.lines)
            self._ok()
            await self._confirm(rows, batch)
            return

    async def _write(self, api: Any, lines: list[str]) -> None:
        """One request; failures are sorted into ``_Retry`` and ``_Rejected``."""
        import aiohttp  # a dependency of influxdb-client[async]
        from influxdb_client.rest import ApiException

        try:
            await api.write(
                bucket=self.cfg.bucket,
                org=self.cfg.org,
                record=lines,
                write_precision=_write_precision_ms(),
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            text = f"HTTP {status} {exc.reason or ''}".strip()
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
            if body:
                text += f": {str(body)[:200]}"
            if status in (400, 413, 422):
                raise _Rejected(status, text) from None
            after = _retry_after(exc.headers) if status in RETRY_AFTER_STATUS else None
            raise _Retry(text, after) from None
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    async def _pause(self, exc: _Retry) -> None:
        self.retries += 1
        self.connected.clear()
        self.last_error = str(exc)
        if not self._failing:
            log.warning("influx %s: write failed: %s; retrying", self.cfg.url, self.last_error)
            self._failing = True
        delay = self._backoff.next()
        if exc.after is not None:
            delay = min(exc.after, self.cfg.retry_max)
        await asyncio.sleep(delay)

    def _ok(self) -> None:
        self._backoff.reset()
        self.connected.set()
        if self._failing:
            log.info("influx %s: writing again", self.cfg.url)
            self._failing = False

    async def _confirm(self, rows: Sequence[Row], batch: _Batch) -> None:
        """Go past ``rows``: they were written, or are dead-lettered or have nothing to write."""
        self.skipped += batch.skipped
        await self.store.ack(self.name, {Lane.TELEMETRY: max(r.id for r in rows)})

    def _dead(self, row: Row, line: str, error: str) -> None:
        self.dead_lettered += 1
        self.dead_letter.append(DeadLetter(row.id, row.device, row.ts, line, error))
        dead_log.error(
            "influx: dead-lettered row %d of device %r (%s): %s", row.id, row.device, error, line
        )

    def _convert(self, rows: Sequence[Row]) -> _Batch:
        """Lines for ``rows`` and the per-device last stamps they would leave behind.

        Pure apart from reading ``_last_ms``: a retried or split chunk is converted again and
        gets the same lines; counters move only when the chunk is confirmed.
        """
        batch = _Batch()
        for row in rows:
            device = row.device
            readings = row.points
            fields: list[tuple[str, int | float]] = []
            for reading in readings:
                value = _numeric(reading.value)
                if value is None or reading.quality is not Quality.GOOD:
                    continue
                fields.append((reading.name, value))
            batch.skipped += len(readings) - len(fields)
            if not fields:
                continue
            ms = round(row.ts * 1000)
            last = batch.last_ms.get(device, self._last_ms.get(device))
            if last is not None and ms <= last:
                ms = last + 1  # unique per series, even if the wall clock stepped back (F42)
            batch.last_ms[device] = ms
            tags = (("device", device), ("gateway", self.ident.gateway_id))
            batch.lines.append(
                line(self.cfg.measurement, (*tags, ("site", self.ident.site_id)), fields, ms)
            )
            batch.fields += len(fields)
        return batch

    def stats(self) -> dict[str, Any]:
        """Counters for status and metrics."""
        return {
            "written": self.written,
            "rows_written": self.rows_written,
            "skipped": self.skipped,
            "dead_lettered": self.dead_lettered,
            "retries": self.retries,
            "last_error": self.last_error,
            "batch_size": self.batch_size,
            "backlog": self.store.backlog(self.name),
        }
