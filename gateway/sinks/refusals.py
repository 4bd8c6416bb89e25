"""Which row, if any, the upstream broker refuses by closing the connection on its publish.

MQTT 3.1.1 §3.3.5: a server that does not authorise a PUBLISH "MUST either make a positive
acknowledgement, according to the normal QoS rules, or close the Network Connection".
mosquitto 2.0 takes the first way (F08). A broker that takes the second would have the sink
publish the same row on every connection, for ever, and every row behind it wait: one refused
alarm would stop every later alarm going upstream. ``Refusals`` finds that row from how
connections end, so the sink can dead-letter it and go on.

Contract (the sink reports every connection that got as far as sending rows, ``ended``):

- Evidence comes only from a connection that was up (CONNACK, subscriptions and the birth's
  PUBACK: the broker answered on it) and that the broker's side closed (the socket ended: an
  EOF or a reset). A connection the sink ended itself (its PUBACK watchdog, a stop) or paho's
  keepalive ended is no evidence: a hung broker, a black hole or a stop never counts.
- A *strike* on a row: such a close while that row, published, was the only row awaiting its
  PUBACK. ``limit`` strikes in a row dead-letter it: ``ended`` returns it, once. A row's
  strikes start over when it gets its PUBACK, and when a connection ends any other way while
  it is in flight.
- *Narrowing*: a close with several rows in flight cannot say which one. When the same row is
  the oldest unacknowledged row of its lane in flight at ``narrow_after`` such closes in a row,
  or a row has a strike, every row in flight at that close is a suspect, and the sink sends one
  row at a time (``narrow``) until each suspect is acknowledged alone or dead-lettered. A
  suspect counts as cleared once a later row of its lane is acknowledged (rows of a lane go
  out in order, so it was sent, evicted or purged by then).
- An ordinary fault cannot dead-letter a row: a flapping link would have to cut the connection
  inside the one round trip of the same row, ``limit`` connections in a row; a broker that
  refuses does so on every attempt, within that round trip.
- Pure: no I/O, no clock, no asyncio. Rows are ``(lane, id)`` keys.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.core.messages import Lane

Key = tuple[Lane, int]  # a row: its lane and its store id
LIMIT = 3  # strikes in a row that dead-letter a row (RELIABILITY.md F08: at most 3 attempts)
NARROW_AFTER = 2  # closes in a row with the same lane head in flight before narrowing


@dataclass(frozen=True, slots=True)
class Loss:
    """How one connection ended, as far as the rows it carried go."""

    by_peer: bool  # the broker's side closed it (not the sink, not a stop, not keepalive)
    pending: Sequence[Key]  # rows in flight without their PUBACK, each lane in id order
    published: Key | None = None  # the last row handed to the client's publish


class Refusals:
    """The evidence of closed connections, and the row it convicts (see the module doc)."""

    def __init__(self, limit: int = LIMIT, narrow_after: int = NARROW_AFTER) -> None:
        self.limit = limit
        self.narrow_after = narrow_after
        self._strikes: dict[Key, int] = {}
        self._heads: dict[Lane, tuple[int, int]] = {}  # lane -> (head id, closes in a row)
        self._suspects: set[Key] = set()

    @property
    def narrow(self) -> bool:
        """Send one row at a time: a suspect is still to be cleared."""
        return bool(self._suspects)

    def strikes(self, key: Key) -> int:
        """Strikes in a row on ``key`` so far."""
        return self._strikes.get(key, 0)

    def acked(self, key: Key) -> bool:
        """``key`` got its PUBACK (the sink tells only while ``narrow``); True when that
        cleared the last suspect."""
        self._strikes.pop(key, None)
        was = self.narrow
        self._clear(key)
        return was and not self.narrow

    def ended(self, loss: Loss) -> Key | None:
        """Take the evidence of one connection's end; the row to dead-letter, if convicted."""
        pending = list(loss.pending)
        if not loss.by_peer:
            self._heads.clear()
            for key in pending:  # an attempt that ended otherwise: the series is broken
                self._strikes.pop(key, None)
            return None
        if len(pending) == 1 and pending[0] == loss.published:
            key = pending[0]
            self._heads.clear()
            n = self._strikes[key] = self._strikes.get(key, 0) + 1
            if n >= self.limit:
                del self._strikes[key]
                self._clear(key)
                return key
            self._suspects.add(key)  # send it alone again: a second strike, or its PUBACK
            return None
        heads: dict[Lane, int] = {}
        for lane, rid in pending:
            heads.setdefault(lane, rid)
        repeated = False
        for lane in list(self._heads):
            if lane not in heads:
                del self._heads[lane]
        for lane, rid in heads.items():
            last, n = self._heads.get(lane, (rid, 0))
            n = n + 1 if last == rid else 1
            self._heads[lane] = (rid, n)
            repeated |= n >= self.narrow_after
        if repeated:
            self._suspects.update(pending)
        return None

    def _clear(self, key: Key) -> None:
        """``key`` and every suspect before it in its lane are cleared."""
        lane, rid = key
        self._suspects = {s for s in self._suspects if s[0] is not lane or s[1] > rid}
