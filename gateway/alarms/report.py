"""The response report: how many alarms, how many acknowledged, and how fast.

``response_report(store, since)`` reads the alarm table for alarms raised since ``since``;
``response_figures(alarms)`` takes alarm bodies as the table keeps them (``raised_at``,
``acked_at``, ``cleared_at``) and gives the count, the acknowledged count, the alarms still open
and unacknowledged, the median, 90th percentile and worst time to acknowledge in seconds, and
the share acknowledged within the plan's 8 minutes.
An unacknowledged alarm counts as such, never as 0 s.
"""

import json
import sqlite3
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.store import Store


async def response_report(store: "Store", since: float) -> dict[str, Any]:
    """Time-to-acknowledge figures over alarms raised since wall time ``since``.

    The figure a property company reports against its response promise: how many alarms,
    how many were acknowledged, and the median, 90th percentile and worst time to
    acknowledge, overall and per severity. Unacknowledged alarms count as such, never as 0.
    """

    def load(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = conn.execute("SELECT body FROM alarms WHERE raised_at >= ?", (since,))
        return [json.loads(r[0]) for r in rows]

    alarms = await store.transact(load)
    return {"since": since, "all": response_figures(alarms)} | {
        sev: response_figures([a for a in alarms if a["severity"] == sev])
        for sev in ("critical", "warning", "info")
    }


ACK_TARGET_S = 480.0  # the community plan's answer time for safety events: 8 minutes


def response_figures(alarms: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, acknowledged count and time-to-acknowledge percentiles (seconds) of ``alarms``;
    how many were acknowledged within ``ACK_TARGET_S`` and their share of all ``alarms``."""
    times: list[float] = sorted(
        float(a["acked_at"]) - float(a["raised_at"])
        for a in alarms
        if a.get("acked_at") is not None
    )

    def pct(q: float) -> float | None:
        if not times:
            return None
        return round(times[min(len(times) - 1, int(q * len(times)))], 3)

    return {
        "alarms": len(alarms),
        "acknowledged": len(times),
        "unacknowledged_open": sum(
            1 for a in alarms if a.get("acked_at") is None and a.get("cleared_at") is None
        ),
        "time_to_ack_p50_s": pct(0.5),
        "time_to_ack_p90_s": pct(0.9),
        "time_to_ack_max_s": round(times[-1], 3) if times else None,
        "target_s": ACK_TARGET_S,
        "within_target": (within := sum(1 for t in times if t <= ACK_TARGET_S)),
        "within_target_share": round(within / len(alarms), 4) if alarms else None,
    }
