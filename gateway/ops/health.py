"""What a running gateway reports about itself: the health document and its readiness rules.

Contract:
- ``health(rt)`` reads only memory (no disk, no network): it is cheap enough to poll.
- Components are what the gateway needs to do its job; each is ``ok`` or not with a
  one-line ``detail``. Required: the store, the alarm engine, every configured sink and local
  API, the local broker session of configured MQTT inputs. ``status`` is ``ok`` when all are
  ok, ``starting`` before the alarm path is up, else ``degraded``; the HTTP status is 200
  only for ``ok``, so a plain HTTP check alarms on a dead uplink too.
- Devices are listed but are not components: an offline sensor is a device problem the
  gateway reports, not a gateway failure.
- Nothing personal, no secret: ids, counts and states only.
"""

from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.alarms.engine import SEVERITY_RANK
from gateway.alarms.model import UNACKED

if TYPE_CHECKING:
    from gateway.runtime.root import Runtime


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def components(rt: "Runtime") -> dict[str, dict[str, Any]]:
    """Every required component: ``{"ok": bool, "detail": str}``."""
    out: dict[str, dict[str, Any]] = {}
    store = rt.store
    if store is not None:
        st = store.stats()
        out["store"] = {
            "ok": True,
            "detail": f"{_mib(st.used_bytes)} of {_mib(st.quota_bytes)} used",
        }
    else:
        out["store"] = {"ok": False, "detail": "not open"}
    engine = rt.alarms
    ready = engine is not None and engine.ready.is_set()
    out["alarms"] = {
        "ok": ready,
        "detail": f"{len(engine.open_alarms())} open" if engine and ready else "starting",
    }
    if rt.cfg.api is not None:
        up = rt.api_up.is_set()
        where = f"{rt.cfg.api.host}:{rt.cfg.api.port}"
        out["api"] = {"ok": up, "detail": f"listening on {where}" if up else "not listening"}
    sink = rt.sink
    if sink is not None:
        up = sink.connected.is_set()
        out["sink:mqtt"] = {
            "ok": up,
            "detail": "connected" if up else f"unreachable: {sink.last_error or 'connecting'}",
        }
    else:
        out["sink:mqtt"] = {"ok": False, "detail": "starting"}
    if rt.cfg.upstream.influx is not None:
        influx = rt.influx
        up = influx is not None and influx.connected.is_set()
        error = influx.last_error if influx is not None else ""
        out["sink:influx"] = {
            "ok": up,
            "detail": "writing" if up else f"failing: {error or 'no write yet'}",
        }
    for group in rt.groups.values():
        for name, probe in group.drivers.probes.items():
            up = bool(probe())
            out[name] = {"ok": up, "detail": "subscribed" if up else "not connected"}
    return out


def health(rt: "Runtime") -> tuple[int, dict[str, Any]]:
    """The HTTP status (200 or 503) and the health document."""
    comps = components(rt)
    failing = sorted(name for name, c in comps.items() if not c["ok"])
    status = "starting" if not rt.ready.is_set() else "degraded" if failing else "ok"
    engine = rt.alarms
    open_alarms = engine.open_alarms() if engine is not None else []
    store = rt.store
    doc: dict[str, Any] = {
        "status": status,
        "failing": failing,
        "gateway": {
            "site_id": rt.cfg.gateway.site_id,
            "gateway_id": rt.cfg.gateway.gateway_id,
            "version": __version__,
            "uptime_s": round(rt.clock.wall() - rt.started, 1),
        },
        "components": comps,
        "devices": {
            p.driver.id: "unknown" if p.online is None else ("online" if p.online else "offline")
            for p in rt.pollers
        },
        "backlog": {s: store.backlog(s) for s in store.sinks} if store is not None else {},
        "alarms": {
            "open": len(open_alarms),
            "unacknowledged": sum(1 for a in open_alarms if a.state in UNACKED),
            "worst": max(
                (a.severity for a in open_alarms if a.state in UNACKED),
                key=SEVERITY_RANK.__getitem__,
                default=None,
            ),
        },
        "uplink": "up" if rt.sink is not None and rt.sink.connected.is_set() else "down",
        "reloads": {"ok": rt.reloads, "refused": rt.reload_failures},
    }
    return (200 if status == "ok" else 503), doc
