"""The console's JSON: alarms on duty, devices, and the gateway's status, from the ports.

Contract:
- Pure functions of what the ports return: no I/O, no clock (``now`` comes in).
- Times are ISO-8601 UTC strings plus, where staff read an age, seconds (``*_s``): the page
  renders ages in the reader's language, so the JSON carries no words.
- A device's point is ``implausible`` when its quality is ``bad``: the value lies outside the
  point's plausible range (a profile's ``range``), the mark of crossed wiring or a broken
  sensor. Every point carries its age (``age_s``), so a value that stopped changing shows.
"""

from collections.abc import Mapping
from typing import Any

from gateway.alarms.model import Alarm
from gateway.alarms.report import ACK_TARGET_S
from gateway.alarms.wording import what
from gateway.core.catalogue import LANGUAGES
from gateway.core.contract import iso
from gateway.core.devices import DeviceState
from gateway.core.snapshots import StoreSnapshot
from gateway.ops.api import alarm_view
from gateway.ops.device_view import device_view as api_device_view
from gateway.ops.health import health
from gateway.ops.snapshot import GatewaySnapshot

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def duty_view(
    alarms: list[Alarm],
    report: Mapping[str, Any],
    siren: str | None,
    now: float,
    rule_types: Mapping[str, str],
) -> dict[str, Any]:
    """Open alarms (most severe first, then oldest), today's figures and the siren.

    Each alarm says what happened in every language (``what``), as the staff messages do.
    """
    ordered = sorted(alarms, key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), a.raised_at))
    return {
        "alarms": [
            alarm_view(a)
            | {
                "age_s": round(max(0.0, now - a.raised_at)),
                "what": {lang: what(a, lang, rule_types.get(a.rule)) for lang in LANGUAGES},
            }
            for a in ordered
        ],
        "today": dict(report.get("all", {})),
        # the target of safety events, as configured (alarms.ack_targets.critical)
        "target_s": report.get("critical", {}).get("target_s", ACK_TARGET_S),
        "siren": siren,
    }


def device_view(state: DeviceState, now: float) -> dict[str, Any]:
    """One device as the local API shows it, with the ages the page counts on from."""
    view = api_device_view(state)
    view["since_s"] = None if state.since is None else round(max(0.0, now - state.since))
    for point, kept in zip(view["points"], state.points.values(), strict=True):
        point["age_s"] = round(max(0.0, now - kept.ts))
    return view


def devices_view(states: Mapping[str, DeviceState], now: float) -> list[dict[str, Any]]:
    """Every device, by bus then id."""
    views = [device_view(s, now) for s in states.values()]
    return sorted(views, key=lambda v: (v["bus"] is None, v["bus"] or "", v["id"]))


def _store(store: StoreSnapshot) -> dict[str, Any]:
    stats = store.stats
    return {
        "used_bytes": stats.used_bytes,
        "quota_bytes": stats.quota_bytes,
        "backlog": dict(store.backlog),
        "evicted": stats.evicted,
        "dropped": stats.dropped,
        "problem": stats.problem,
    }


def status_view(snap: GatewaySnapshot, now: float) -> dict[str, Any]:
    """Uplink, backlog, local buffer, clock, staff channels, and the health verdict."""
    code, doc = health(snap)
    mqtt = snap.mqtt
    return {
        "health": doc["status"],
        "failing": doc["failing"],
        "gateway": doc["gateway"],
        "uplink": {
            "connected": bool(mqtt and mqtt.connected),
            "last_error": mqtt.last_error if mqtt else "",
            "delivered": mqtt.delivered if mqtt else 0,
        },
        "store": _store(snap.store),
        "clock_synced": snap.gateway.clock_synced,
        "channels": {
            name: {
                "down": ch.down,
                "delivered": ch.delivered,
                "failed": ch.failed,
                "last_ok": None if ch.last_ok is None else iso(ch.last_ok),
                "last_ok_s": None if ch.last_ok is None else round(max(0.0, now - ch.last_ok)),
                "last_error": ch.last_error,
            }
            for name, ch in snap.alarms.channels.items()
        },
        "siren": snap.alarms.siren,
        "ok": code == 200,
    }
