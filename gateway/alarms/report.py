"""The response report's figures: how many alarms, how many acknowledged, and how fast.

``response_figures(alarms)`` takes alarm bodies as the alarm table keeps them (``raised_at``,
``acked_at``, ``cleared_at``) and gives the count, the acknowledged count, the alarms still open
and unacknowledged, and the median, 90th percentile and worst time to acknowledge in seconds.
An unacknowledged alarm counts as such, never as 0 s.
"""

from typing import Any


def response_figures(alarms: list[dict[str, Any]]) -> dict[str, Any]:
    """Count, acknowledged count and time-to-acknowledge percentiles (seconds) of ``alarms``."""
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
    }
