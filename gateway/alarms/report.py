"""The response report: how many alarms, how many acknowledged, how fast, and which were late.

``response_report(store, since, targets)`` reads the alarm table for alarms raised from
``since`` (until ``until``, if given); ``response_figures(alarms, targets)`` takes alarm bodies
as the table keeps them (``raised_at``, ``acked_at``, ``cleared_at``, ``severity``, ``ladder``)
and gives the count, the acknowledged count, the alarms still open and unacknowledged, the
median, 90th percentile and worst time to acknowledge in seconds, how many were acknowledged
within their severity's target (``alarms.ack_targets``: by default the plan's 8 minutes) and
their share of all alarms, and how many escalations ran out of rungs: alarms neither
acknowledged nor cleared by the time the last rung of their ladder was due (ladders of two
rungs or more, as configured now; a one-rung ladder has nothing to climb).
An unacknowledged alarm counts as such, never as 0 s, and against the target.

``late`` lists the alarms not acknowledged within their target, oldest first (at most
``MAX_LATE``; ``late_total`` counts them all): acknowledged too late, or never (it cleared by
itself, or is still open past its target). One still open within its target is not late yet.
"""

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.config.alarms import AlarmsConfig
from gateway.core.contract import iso

if TYPE_CHECKING:
    from gateway.store import Store

SEVERITIES = ("critical", "warning", "info")
ACK_TARGET_S = 480.0  # the community plan's answer time for safety events: 8 minutes
MAX_LATE = 100  # late alarms listed at most (all are counted)


@dataclass(frozen=True, slots=True)
class Targets:
    """What the report measures against: answer targets, and where each ladder ends."""

    ack: Mapping[str, float] = field(
        default_factory=lambda: dict.fromkeys(SEVERITIES, ACK_TARGET_S)
    )  # severity -> seconds
    tops: Mapping[str, float] = field(default_factory=dict)  # ladder -> its last rung's ``after``

    @classmethod
    def of(cls, cfg: AlarmsConfig) -> "Targets":
        """The targets of an alarms config; ladders of one rung have no top to run out at."""
        tops = {ld.id: ld.tiers[-1].after for ld in cfg.ladders if len(ld.tiers) > 1}
        return cls(cfg.ack_targets.model_dump(), tops)

    def target(self, alarm: Mapping[str, Any]) -> float:
        """Seconds within which ``alarm`` should have been acknowledged."""
        return self.ack.get(alarm.get("severity", ""), ACK_TARGET_S)


async def response_report(
    store: "Store",
    since: float,
    targets: Targets | None = None,
    *,
    until: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The response figures of alarms raised from wall time ``since`` until ``until``.

    The figure a property company reports against its response promise, overall and per
    severity, and the alarms that missed their target. ``now`` decides whether an open alarm
    is late yet and whether its ladder has run out (without it, every open alarm is late).
    """
    targets = targets or Targets()
    end = math.inf if until is None else until

    def load(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            "SELECT body FROM alarms WHERE raised_at >= ? AND raised_at < ? ORDER BY raised_at",
            (since, end),
        )
        return [json.loads(r[0]) for r in rows]

    alarms = await store.transact(load)
    return {"since": since, "until": until} | response_of(alarms, targets, now)


def response_of(
    alarms: list[dict[str, Any]], targets: Targets, now: float | None
) -> dict[str, Any]:
    """The figures of ``alarms`` (oldest first), overall and per severity, and the late ones."""
    late = [a for a in alarms if _late(a, targets, now)]
    return (
        {"all": response_figures(alarms, targets, now)}
        | {
            sev: response_figures([a for a in alarms if a["severity"] == sev], targets, now, sev)
            for sev in SEVERITIES
        }
        | {"late": [late_view(a) for a in late[:MAX_LATE]], "late_total": len(late)}
    )


def response_figures(
    alarms: list[dict[str, Any]],
    targets: Targets | None = None,
    now: float | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    """Count, acknowledged count and time-to-acknowledge percentiles (seconds) of ``alarms``;
    how many were acknowledged within their target and their share of all ``alarms``; how many
    escalations ran out of rungs. ``target_s`` is ``severity``'s target, or for a mix the
    target all severities share (None if they differ)."""
    targets = targets or Targets()
    times: list[float] = sorted(
        float(a["acked_at"]) - float(a["raised_at"])
        for a in alarms
        if a.get("acked_at") is not None
    )

    def pct(q: float) -> float | None:
        if not times:
            return None
        return round(times[min(len(times) - 1, int(q * len(times)))], 3)

    within = sum(
        1
        for a in alarms
        if a.get("acked_at") is not None
        and float(a["acked_at"]) - float(a["raised_at"]) <= targets.target(a)
    )
    shared = set(targets.ack.values())
    if severity is not None:
        target_s: float | None = targets.ack.get(severity, ACK_TARGET_S)
    else:
        target_s = shared.pop() if len(shared) == 1 else None
    return {
        "alarms": len(alarms),
        "acknowledged": len(times),
        "unacknowledged_open": sum(
            1 for a in alarms if a.get("acked_at") is None and a.get("cleared_at") is None
        ),
        "time_to_ack_p50_s": pct(0.5),
        "time_to_ack_p90_s": pct(0.9),
        "time_to_ack_max_s": round(times[-1], 3) if times else None,
        "target_s": target_s,
        "within_target": within,
        "within_target_share": round(within / len(alarms), 4) if alarms else None,
        "escalation_exhausted": sum(1 for a in alarms if _ran_out(a, targets, now)),
    }


def _late(alarm: Mapping[str, Any], targets: Targets, now: float | None) -> bool:
    raised = float(alarm["raised_at"])
    if alarm.get("acked_at") is not None:
        return float(alarm["acked_at"]) - raised > targets.target(alarm)
    if alarm.get("cleared_at") is not None:
        return True  # over, and nobody answered it
    return now is None or now - raised > targets.target(alarm)


def _ran_out(alarm: Mapping[str, Any], targets: Targets, now: float | None) -> bool:
    top = targets.tops.get(alarm.get("ladder", ""))
    if top is None:
        return False
    due = float(alarm["raised_at"]) + top
    if now is not None and now < due:
        return False
    answered = (alarm.get(k) for k in ("acked_at", "cleared_at"))
    return all(t is None or float(t) >= due for t in answered)


def late_view(alarm: Mapping[str, Any]) -> dict[str, Any]:
    """A late alarm as the report lists it: ``time_to_ack_s`` null means never acknowledged."""
    acked = alarm.get("acked_at")
    return {
        "id": alarm["id"],
        "device": alarm["device"],
        "severity": alarm["severity"],
        "raised_at": iso(float(alarm["raised_at"])),
        "time_to_ack_s": None
        if acked is None
        else round(float(acked) - float(alarm["raised_at"]), 3),
        "acked_by": alarm.get("acked_by") or None,
    }
