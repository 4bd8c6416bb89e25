"""One cursor per sink and lane: how far rows were handed out, and how far confirmed.

Invariants (the caller holds the store's memory lock around every call):

1. ``confirmed[sink][lane]`` mirrors the ``cursors`` table: it changes only on the store
   thread, right after the COMMIT that wrote it, and only forward.
2. ``handed[sink][lane] >= confirmed[sink][lane]``: rows up to ``handed`` were given to the
   sink and not given back. ``rewind`` resets it to ``confirmed`` (a reconnect re-sends what
   was not confirmed); ``give_back`` lowers it for an unsent tail. It lives in memory only:
   after a restart every sink starts from its confirmed cursor.
3. A sink sees only its own lanes (``lanes[sink]``); rows of other lanes never wait for it.
"""

import logging
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence

from gateway.core.messages import Lane

log = logging.getLogger(__name__)


class Cursors:
    """The handed and confirmed cursors of every sink."""

    def __init__(
        self, sinks: Sequence[str], lanes: Mapping[str, Collection[Lane]] | None = None
    ) -> None:
        self.sinks = tuple(sinks)
        self.lanes: dict[str, tuple[Lane, ...]] = {
            s: tuple(ln for ln in Lane if lanes is None or s not in lanes or ln in lanes[s])
            for s in self.sinks
        }
        self._above = {
            s: {lane: tuple(ln for ln in self.lanes[s] if ln < lane) for lane in Lane}
            for s in self.sinks
        }
        self.confirmed: dict[str, dict[Lane, int]] = {s: dict.fromkeys(Lane, 0) for s in sinks}
        self.handed: dict[str, dict[Lane, int]] = {s: dict.fromkeys(Lane, 0) for s in sinks}
        # the highest id of each lane that may have reached a sink (handed out, ever, or in the
        # file at start): a gap row up to here is never changed, whatever is rewound after
        self.sent: dict[Lane, int] = dict.fromkeys(Lane, 0)

    def load(self, conn: sqlite3.Connection) -> None:
        """Drop cursors of sinks no longer configured, add new ones, read them all.

        Runs inside the caller's write transaction.
        """
        known = {r[0] for r in conn.execute("SELECT DISTINCT sink FROM cursors")}
        for gone in known - set(self.sinks):
            conn.execute("DELETE FROM cursors WHERE sink=?", (gone,))
            log.warning("sink %r is no longer configured: dropped its cursor", gone)
        conn.executemany(
            "INSERT OR IGNORE INTO cursors(sink, lane, last_id) VALUES(?, ?, 0)",
            [(s, int(ln)) for s in self.sinks for ln in Lane],
        )
        for sink, lane, last in conn.execute("SELECT sink, lane, last_id FROM cursors"):
            self.confirmed[sink][Lane(lane)] = last
            self.handed[sink][Lane(lane)] = last

    def waiting(
        self, sink: str, latest: Mapping[Lane, int], lanes: Collection[Lane] | None = None
    ) -> list[Lane]:
        """The sink's lanes (of ``lanes``, if given) holding rows not handed to it, in order."""
        handed = self.handed[sink]
        return [
            ln
            for ln in self.lanes[sink]
            if (lanes is None or ln in lanes) and latest[ln] > handed[ln]
        ]

    def more_urgent(self, sink: str, latest: Mapping[Lane, int], lane: Lane) -> bool:
        """Whether a lane above ``lane`` holds rows not handed to ``sink`` yet.

        Asked for every row a sink sends: only the lanes above are looked at, and no lock is
        taken (a hint; a read racing a commit is answered right on the next row).
        """
        handed = self.handed[sink]
        return any(latest[ln] > handed[ln] for ln in self._above[sink][lane])

    def backlog(self, sink: str, latest: Mapping[Lane, int]) -> int:
        """Upper bound of rows ``sink`` has not confirmed (ids are not dense)."""
        mine = self.confirmed[sink]
        return sum(max(0, latest[ln] - mine[ln]) for ln in self.lanes[sink])

    def hand_out(self, sink: str, rows: Iterable[tuple[Lane, int]]) -> None:
        """The rows ``(lane, id)`` were given to ``sink``."""
        handed, sent = self.handed[sink], self.sent
        for lane, rid in rows:
            if rid > handed[lane]:
                handed[lane] = rid
            if rid > sent[lane]:
                sent[lane] = rid

    def give_back(self, sink: str, rows: Iterable[tuple[Lane, int]]) -> None:
        """The rows ``(lane, id)`` were not sent after all: hand them out again."""
        handed = self.handed[sink]
        for lane, rid in rows:
            handed[lane] = min(handed[lane], rid - 1)

    def rewind(self, sink: str) -> None:
        """Hand out again everything ``sink`` has not confirmed."""
        self.handed[sink] = dict(self.confirmed[sink])

    def moves(self, sink: str, upto: Mapping[Lane, int]) -> dict[Lane, int]:
        """The part of ``upto`` that moves ``sink``'s confirmed cursors forward."""
        mine = self.confirmed[sink]
        return {ln: i for ln, i in upto.items() if i > mine[ln]}

    def low(self, lane: Lane, sink: str, last: int) -> int:
        """The id up to which every sink of ``lane`` confirmed, once ``sink`` reaches ``last``."""
        return min(
            last if s == sink else self.confirmed[s][lane]
            for s in self.sinks
            if lane in self.lanes[s]
        )

    def newest_sent(self, lane: Lane) -> int:
        """The highest id of ``lane`` that may have reached a sink: handed out at any time since
        start (a rewind or a give-back does not lower it), or already in the file at start."""
        return self.sent[lane]

    def confirm(self, sink: str, moves: Mapping[Lane, int]) -> None:
        """The moves were committed (invariant 1); handed never falls behind (invariant 2)."""
        self.confirmed[sink].update(moves)
        handed = self.handed[sink]
        for lane, last in moves.items():
            handed[lane] = max(handed[lane], last)
