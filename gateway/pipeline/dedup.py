"""Button and door events already delivered, remembered across restarts: a bounded,
time-windowed cache per button or terminal config, persisted in one small JSON file.

Invariants:
- A cache holds at most ``size`` keys; when full, the oldest key goes first. The file holds
  what the caches hold, so it is bounded too.
- A key is *seen* while its age (wall-clock now minus its first delivery) is within
  ``[-window, +window]``. Wall-clock, because the window has to span a restart of the machine,
  which monotonic time does not. A forward clock step shortens the window (a replay may alarm
  once more: the safe side); a backward step lengthens it by one window at most.
- ``DedupFile.save`` replaces the file atomically (``gateway.core.files.replace_file``: temp
  file, fsync, rename, fsync of the folder; mode 0600): after a crash the file holds the
  previous or the new content, never a mix.
- ``DedupMemory`` never writes on the event loop: the loop only copies the caches (a C-level
  copy of each), a worker thread of its own serialises, writes and fsyncs. Writes are
  coalesced, never two at once, and ``close`` writes the last state.
- Given ``settled`` (the inputs acknowledge a message only after it is committed), the file
  never holds a key before what its event caused is committed: a write takes its copy, waits
  for ``settled()`` and only then writes that copy; ``close`` writes the last copy that
  settled, never a newer one. Else a crash between remembering a press and committing its
  alarm would have the broker's second copy of it dropped as a duplicate: a lost press.
- A missing file is an empty memory. An unreadable or corrupt file, or a malformed entry, is
  skipped and counted in ``skipped`` with one WARNING, never a crash: forgetting an event can
  only cause a duplicate alarm, never a lost one.

``Dedup`` is the pipeline stage that uses such a memory (one for the MQTT buttons, one for
the door terminals).
"""

import asyncio
import concurrent.futures
import json
import logging
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from gateway.core.access import AccessEvent
from gateway.core.clock import Clock
from gateway.core.files import replace_file
from gateway.core.items import Item
from gateway.core.messages import ContactEvent

log = logging.getLogger(__name__)

Key = tuple[str, str, bool]  # device, event id, active
Entry = tuple[Key, float]  # key, wall-clock time of its first delivery
Held = tuple[float, int]  # a held key's first delivery and its add number
Settled = Callable[[], Awaitable[None]]  # returns once what was emitted so far is committed
VERSION = 1
MAX_FILE = 64 * 1024**2  # bytes; 100k entries of the longest ids fit well below
SAVE_EVERY = 1.0  # seconds between two writes of the dedup file, at most
CHUNK = 500  # entries per json.dumps call when the file is written


class DedupCache:
    """The keys delivered within the last ``window`` seconds, at most ``size`` of them.

    Held in a plain dict in delivery order (a re-added key moves to the end), so a
    ``snapshot`` is one fast C copy; a queue of ``(key, add number)`` finds the oldest key in
    O(1) and skips the entries of keys since removed or added again.
    """

    def __init__(self, window: float, size: int) -> None:
        self.window = window
        self.size = size
        self._first: dict[Key, Held] = {}  # in delivery order
        self._order: deque[tuple[Key, int]] = deque()  # oldest first, with stale entries
        self._adds = 0

    def __len__(self) -> int:
        return len(self._first)

    def _fresh(self, ts: float, now: float) -> bool:
        return -self.window <= now - ts <= self.window

    def _oldest(self) -> Key | None:
        while self._order:
            key, n = self._order[0]
            held = self._first.get(key)
            if held is not None and held[1] == n:
                return key
            self._order.popleft()  # removed or added again since
        return None

    def _drop_oldest(self, key: Key) -> None:
        del self._first[key]
        self._order.popleft()

    def _expire(self, now: float) -> None:
        while (key := self._oldest()) is not None and not self._fresh(self._first[key][0], now):
            self._drop_oldest(key)

    def seen(self, key: Key, now: float) -> bool:
        """Whether ``key`` was delivered within the window."""
        self._expire(now)
        held = self._first.get(key)
        if held is None:
            return False
        if self._fresh(held[0], now):
            return True
        del self._first[key]  # out of order after a clock step: stale all the same
        return False

    def add(self, key: Key, now: float) -> None:
        """Remember ``key`` as delivered at ``now``; the oldest key goes if the cache is full."""
        self._first.pop(key, None)
        self._adds += 1
        self._first[key] = (now, self._adds)
        self._order.append((key, self._adds))
        while len(self._first) > self.size and (oldest := self._oldest()) is not None:
            self._drop_oldest(oldest)
        if len(self._order) > 2 * len(self._first) + 64:  # too many stale entries: rebuild
            self._order = deque((k, n) for k, (_, n) in self._first.items())

    def entries(self, now: float) -> list[Entry]:
        """The keys still in the window, oldest first (what ``DedupFile.save`` writes)."""
        return self.fresh(self._first, now)

    def snapshot(self) -> dict[Key, Held]:
        """Every key held, oldest first, stale or not: one cheap copy for a writer thread."""
        return self._first.copy()

    def fresh(self, held: Mapping[Key, Held], now: float) -> list[Entry]:
        """The keys of ``held`` (a ``snapshot``) still in the window at ``now``, oldest first."""
        return [(k, ts) for k, (ts, _) in held.items() if self._fresh(ts, now)]

    def restore(self, entries: Sequence[Entry], now: float) -> None:
        """Take back what ``entries`` gives (oldest first), dropping stale keys and overflow."""
        for key, ts in entries:
            if self._fresh(ts, now):
                self.add(key, ts)


def _entry(item: object) -> Entry | None:
    if not isinstance(item, list) or len(item) != 4:
        return None
    device, event_id, active, ts = item
    if not (isinstance(device, str) and isinstance(event_id, str) and isinstance(active, bool)):
        return None
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return None
    return (device, event_id, active), float(ts)


def _encode(caches: Mapping[str, Sequence[Entry]]) -> bytes:
    """The file's JSON, encoded ``CHUNK`` entries at a time.

    The C encoder holds the GIL for a whole ``json.dumps`` call: one call over 100k entries
    would stall the event loop from the writer thread. Between chunks the GIL changes hands.
    """
    parts = [f'{{"version":{VERSION},"buttons":{{']
    for n, (button, entries) in enumerate(caches.items()):
        parts.append(f"{',' if n else ''}{json.dumps(button)}:[")
        for i in range(0, len(entries), CHUNK):
            rows = [[*key, ts] for key, ts in entries[i : i + CHUNK]]
            parts.append(("," if i else "") + json.dumps(rows, separators=(",", ":"))[1:-1])
        parts.append("]")
    parts.append("}}")
    return "".join(parts).encode()


class DedupFile:
    """The JSON file at ``path``: ``{"version": 1, "buttons": {id: [[dev, evt, active, ts]]}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.skipped = 0  # corrupt files and malformed entries ignored by ``load``

    def load(self) -> dict[str, list[Entry]]:
        """Every button's entries; ``{}`` for a missing or corrupt file."""
        try:
            if self.path.stat().st_size > MAX_FILE:
                raise ValueError(f"larger than {MAX_FILE} bytes")
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return self._corrupt(str(exc))
        buttons = doc.get("buttons") if isinstance(doc, dict) else None
        if (
            not isinstance(doc, dict)
            or doc.get("version") != VERSION
            or not isinstance(buttons, dict)
        ):
            return self._corrupt("not a version 1 dedup file")
        out: dict[str, list[Entry]] = {}
        bad = 0
        for button, items in buttons.items():
            entries = [_entry(item) for item in items] if isinstance(items, list) else [None]
            out[button] = [e for e in entries if e is not None]
            bad += sum(1 for e in entries if e is None)
        if bad:
            self.skipped += bad
            log.warning("dedup file %s: %d malformed entries skipped", self.path, bad)
        return out

    def _corrupt(self, why: str) -> dict[str, list[Entry]]:
        self.skipped += 1
        log.warning(
            "dedup file %s unusable (%s): starting with an empty memory; a replayed button"
            " event may alarm once more",
            self.path,
            why,
        )
        return {}

    def save(self, caches: Mapping[str, Sequence[Entry]]) -> None:
        """Replace the file atomically with ``caches``; raises ``OSError``."""
        replace_file(self.path, _encode(caches))


Snapshot = dict[str, dict[Key, Held]]  # config id -> ``DedupCache.snapshot``


class DedupMemory:
    """Event ids delivered, per config id: bounded caches, saved to one file.

    Writes are coalesced: at once if the last one is old, else one write per ``SAVE_EVERY``
    seconds of a storm. The loop takes a snapshot; serialising and both fsyncs run in this
    memory's own single worker thread, so at most one write is in flight and a pass made
    during it is written by the next one. A failing write is logged once; dedup goes on in
    memory. ``close`` (at shutdown) waits for a write in flight, then writes the last state.
    """

    def __init__(
        self,
        path: Path,
        windows: dict[str, tuple[float, int]],
        clock: Clock,
        settled: Settled | None = None,
    ) -> None:
        self.file = DedupFile(path)
        self.clock = clock
        self.settled = settled
        self._durable: tuple[Snapshot, float] | None = None  # the last copy that settled
        self.caches = {cid: DedupCache(w, size) for cid, (w, size) in windows.items()}
        for cid, entries in self.file.load().items():
            if cid in self.caches:  # a config since removed is forgotten
                self.caches[cid].restore(entries, clock.wall())
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dedup-save")
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[OSError | None] | None = None
        self._dirty = False  # a pass came while a write was in flight
        self._closed = False
        self._saved_at = float("-inf")  # loop time of the last write
        self._failing = False

    def save_soon(self) -> None:
        """Write at once if the last write is old, else coalesce a storm into one write."""
        if self._closed:
            return
        if self._writing is not None:
            self._dirty = True
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._saved_at + SAVE_EVERY - loop.time())
            self._timer = loop.call_later(delay, self._start_write)

    def _start_write(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        self._saved_at = loop.time()
        snap, now = self._snapshot(), self.clock.wall()
        if self.settled is None:
            self._writing = loop.run_in_executor(self._pool, self._write, snap, now)
        else:
            self._writing = asyncio.ensure_future(self._write_settled(snap, now))
        self._writing.add_done_callback(self._written)

    async def _write_settled(self, snap: Snapshot, now: float) -> OSError | None:
        assert self.settled is not None
        await self.settled()  # every key of ``snap`` has its event committed now
        self._durable = snap, now
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._write, snap, now)

    def _written(self, done: "asyncio.Future[OSError | None]") -> None:
        self._writing = None
        if done.cancelled():
            return
        self._report(done.result())  # anything but an OSError is a bug: the loop logs it
        if self._dirty:
            self._dirty = False
            self.save_soon()

    def _snapshot(self) -> Snapshot:
        return {cid: c.snapshot() for cid, c in self.caches.items()}

    def _write(self, snap: Snapshot, now: float) -> OSError | None:
        """In the worker thread (or at close): the error of the write, if it failed."""
        try:
            self.file.save({cid: self.caches[cid].fresh(e, now) for cid, e in snap.items()})
        except OSError as exc:
            return exc
        return None

    def _report(self, exc: OSError | None) -> None:
        if exc is not None:
            if not self._failing:
                log.warning("cannot write dedup file %s: %s", self.file.path, exc)
                self._failing = True
        elif self._failing:
            log.info("dedup file %s written again", self.file.path)
            self._failing = False

    def close(self) -> None:
        """Cancel a pending write, wait for one in flight, and write the last state now.

        Blocking, once, at shutdown: it is the write the daemon must not lose.
        """
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None and self.settled is not None:
            self._writing.cancel()  # still waiting for ``settled``: its copy may not be safe
        self._pool.shutdown(wait=True)
        if self.settled is None:
            self._report(self._write(self._snapshot(), self.clock.wall()))
        elif self._durable is not None:
            self._report(self._write(*self._durable))


class Dedup:
    """The pipeline's dedup stage for events that carry an id (MQTT buttons, door terminals).

    Contract: a ``ContactEvent`` or a reported ``AccessEvent`` with an ``event_id`` from a
    ``source`` config this memory knows is dropped (``dropped["duplicate"]``) when its key,
    ``(device, event_id, active)`` (``active`` is True for door events), was passed within
    the source's window; otherwise it is remembered and passed on. Other items pass
    untouched. Door events must be pseudonymised first: the memory is written to a file.
    I/O: a pass schedules a coalesced write of the memory (``DedupMemory.save_soon``), so a
    restart does not re-alarm a replayed event. With ``settled`` the write waits until the
    event's alarm and record are committed, so a crash before that lets the broker's second
    copy through (its message was not acknowledged either) and the alarm is raised once; a
    crash between the commit and the write may let a replay alarm twice (the safe side).
    """

    name = "dedup"

    def __init__(self, memory: DedupMemory) -> None:
        self.memory = memory
        self.dropped: Counter[str] = Counter()

    @classmethod
    def open(
        cls,
        path: Path,
        windows: dict[str, tuple[float, int]],
        clock: Clock,
        settled: Settled | None = None,
    ) -> "Dedup":
        """The stage over the memory in ``path`` (``windows``: config id -> window, size)."""
        return cls(DedupMemory(path, windows, clock, settled))

    def merged(self, rejected: Mapping[str, int]) -> dict[str, int]:
        """A component's reject counts with this stage's repeats added as ``duplicate``.

        What the component counted when it deduplicated itself: the metrics stay the same.
        """
        out = dict(rejected)
        out["duplicate"] = out.get("duplicate", 0) + self.dropped["duplicate"]
        return out

    def __call__(self, item: Item) -> Item | None:
        if isinstance(item, ContactEvent):
            key, ts = (item.device, item.event_id, item.active), item.ts
        elif isinstance(item, AccessEvent) and not item.derived:
            key, ts = (item.device, item.event_id, True), item.gateway_ts
        else:
            return item
        cache = self.memory.caches.get(item.source)
        if cache is None or not item.event_id:
            return item
        assert not isinstance(item, AccessEvent) or not item.raw_person, "not pseudonymised"
        if cache.seen(key, ts):
            self.dropped["duplicate"] += 1
            return None
        cache.add(key, ts)
        self.memory.save_soon()
        return item
