"""Refused messages of local-broker inputs: counted by reason, logged once per device.

Contract:
- ``Rejects(reasons, what, count, log)`` keeps ``counts[reason]`` for every reason from the
  start (zeros included), so health and metrics list each one; its lines go to ``log``, the
  driver's own logger.
- ``add(reason, detail, topic, payload, device, who)`` adds one to ``counts[reason]`` and,
  given ``count`` and a configured ``device``, one to that device's ``rejected`` counter in
  its state. It logs at WARNING once per (reason, ``who``: the device, else the entry, else
  the topic), with at most ``SHOWN`` characters of the payload; at most ``LOGGED_MAX`` such
  pairs are remembered, later ones are only counted. It never raises.
"""

import logging
from collections.abc import Callable, Iterable

LOGGED_MAX = 1024  # (reason, who) pairs remembered for log-once; more are counted silently
SHOWN = 200  # payload characters a reject log shows


class Rejects:
    """Reject counters by reason, with one log line per (reason, device)."""

    def __init__(
        self,
        reasons: Iterable[str],
        what: str,
        count: Callable[[str, str], None] | None,
        log: logging.Logger,
    ) -> None:
        self.counts: dict[str, int] = dict.fromkeys(reasons, 0)
        self.what = what  # "button", "mqtt_json": what the log line calls a message
        self._count = count
        self._log = log
        self._logged: set[tuple[str, str]] = set()

    def shed(self, n: int) -> None:
        """``n`` QoS 0 messages were shed unread: counted as ``shed``, never logged."""
        self.counts["shed"] += n

    def add(
        self, reason: str, detail: str, topic: str, payload: bytes, device: str, who: str = ""
    ) -> None:
        """Count (and maybe log) one refused message; see the module docstring."""
        self.counts[reason] += 1
        if device and self._count is not None:
            self._count(device, "rejected")
        who = device or who or topic[:100]
        if (reason, who) in self._logged or len(self._logged) >= LOGGED_MAX:
            return
        self._logged.add((reason, who))
        shown = payload[: SHOWN * 4].decode("utf-8", "replace")[:SHOWN]
        self._log.warning(
            "%s message on %r rejected (%s): %s; further %s rejects of %s are counted,"
            " not logged; payload %r",
            self.what,
            topic[:100],
            reason,
            detail,
            reason,
            who,
            shown,
            extra={"device": device, "reason": reason},
        )
