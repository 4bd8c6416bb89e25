"""What a running gateway reports about itself: the health document and its readiness rules.

Contract:
- ``health(snapshot)`` reads only the snapshot it is given (no disk, no network, nothing
  live): it is cheap enough to poll, and testable from a snapshot made by hand.
- Components are what the gateway needs to do its job; each is ``ok`` or not with a
  one-line ``detail``. Required: the store, the alarm engine, every configured sink and local
  API, the local broker session of configured MQTT inputs. ``status`` is ``ok`` when all are
  ok, ``starting`` before the alarm path is up, else ``degraded``; the HTTP status is 200
  only for ``ok``, so a plain HTTP check alarms on a dead uplink too.
- Devices are listed but are not components: an offline sensor is a device problem the
  gateway reports, not a gateway failure. So are disabled points: ``disabled`` lists, per
  device that has any, the points it refused (exception 0x01-0x03), which it reads no more
  but for a retry on a slow schedule.
- Inputs: every configured input device is listed under ``inputs`` with its kind, state
  (``running``, ``not running``, ``unknown``) and reason. One that a contact rule names by id
  (``alarm``) is a component too, ``input:<id>``: while it does not run, alarms it should raise
  cannot be, so the gateway is ``degraded``. ``unmatched`` counts, per device, the contacts no
  contact rule named (they raised nothing); ``rejected``, per input, the messages it refused
  by reason (those above zero: the same counts as ``cgw_input_rejected_total``).
- ``clock_synced`` says whether NTP has set the clock. It is shown, not a component: a gateway
  without NTP still raises alarms, but stamps them with an unsynced clock and refuses
  platform commands.
- ``welfare`` (when welfare checks run) counts the households watched, quiet too long now, on
  a planned absence and paused (a source offline); not a component: a quiet household is a
  matter for staff, not a gateway failure.
- Modems: ``modems`` lists each local 4G modem by port: whether it can send (``state`` is
  ``ok`` or the reason it cannot), SIM state, registration, signal (CSQ 0-31), operator, the
  last SMS or call that went through, resets, and the channels that use it. A modem that
  cannot send makes its channels' components fail (``channel:<id>``), so the gateway is
  ``degraded``.
- Nothing personal, no secret: ids, counts and states only (no phone numbers).
- ``status_line(snapshot)`` is the one-line summary systemd shows.
"""

from datetime import UTC, datetime
from typing import Any

from gateway.alarms.siren import SEVERITY_RANK
from gateway.core.snapshots import ChannelState, InputState, SinkSnapshot
from gateway.ops.snapshot import GatewaySnapshot

CERT_WARN_DAYS = 30  # the console's certificate makes health degraded this long before its end


def _certificate(ends: float, left: float) -> dict[str, Any]:
    """The console's HTTPS certificate: not ok from ``CERT_WARN_DAYS`` before its end."""
    day = datetime.fromtimestamp(ends, UTC).date().isoformat()
    renew = "renew it: install.sh --console ADDR (docs/console.md)"
    if left < 0:
        detail = f"expired on {day}: browsers refuse the console; {renew}"
    elif left < CERT_WARN_DAYS:
        detail = f"expires on {day}, in {left:.0f} days; {renew}"
    else:
        detail = f"valid until {day}"
    return {"ok": left >= CERT_WARN_DAYS, "detail": detail}


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"


def _up(part: SinkSnapshot | None) -> bool:
    return part is not None and part.connected


def components(snap: GatewaySnapshot) -> dict[str, dict[str, Any]]:
    """Every required component: ``{"ok": bool, "detail": str}``."""
    st = snap.store.stats
    out: dict[str, dict[str, Any]] = {
        "store": {"ok": True, "detail": f"{_mib(st.used_bytes)} of {_mib(st.quota_bytes)} used"}
        if not st.problem
        else {"ok": False, "detail": f"not writable: {st.problem}; alarms wait in memory"}
    }
    if snap.store.stand_in:
        out["store"] = {
            "ok": False,
            "detail": f"{snap.store.stand_in}; running on the stand-in {snap.store.path}"
            f" ({_mib(st.used_bytes)} used, lost at a reboot); restart once fixed",
        }
    alarms = snap.alarms
    out["alarms"] = {
        "ok": alarms.ready,
        "detail": f"{len(alarms.open)} open" if alarms.ready else "starting",
    }
    for cid, ch in sorted(alarms.channels.items()):  # the staff channels used so far
        out[f"channel:{cid}"] = {"ok": not ch.down, "detail": _channel_state(ch)}
    if snap.api is not None:
        up = snap.api.listening
        out["api"] = {
            "ok": up,
            "detail": f"listening on {snap.api.where}" if up else "not listening",
        }
    mqtt = snap.mqtt
    if mqtt is not None:
        refused = "".join(
            f"; {n} {lane} message(s) refused by the broker, dead-lettered"
            for lane, n in mqtt.dead_by_lane.items()
            if n
        )
        out["sink:mqtt"] = {
            "ok": mqtt.connected,
            "detail": (
                "connected" if mqtt.connected else f"unreachable: {mqtt.last_error or 'connecting'}"
            )
            + refused,
        }
    else:
        out["sink:mqtt"] = {"ok": False, "detail": "starting"}
    if snap.influx_configured:
        up = _up(snap.influx)
        error = snap.influx.last_error if snap.influx is not None else ""
        out["sink:influx"] = {
            "ok": up,
            "detail": "writing" if up else f"failing: {error or 'no write yet'}",
        }
    console = snap.console
    if console is not None and console.cert_ends is not None and console.cert_days_left is not None:
        out["console:certificate"] = _certificate(console.cert_ends, console.cert_days_left)
    for name, up in snap.inputs.connections.items():
        out[name] = {"ok": up, "detail": "subscribed" if up else "not connected"}
    for i in snap.inputs.devices:
        if i.alarmed:
            out[f"input:{i.id}"] = {"ok": i.running is not False, "detail": _input_state(i)}
    return out


def _channel_state(ch: ChannelState) -> str:
    if ch.modem is not None and not ch.modem.ok:
        return f"down: modem {ch.modem.port}: {ch.modem.problem}"
    if ch.down:
        return f"down: {ch.in_a_row} messages not delivered ({ch.last_error})"
    return f"{ch.delivered} delivered, {ch.failed} failed"


def modems(snap: GatewaySnapshot) -> dict[str, dict[str, Any]]:
    """Each modem by port, as its last check found it, with the channels that use it."""
    out: dict[str, dict[str, Any]] = {}
    for cid, ch in sorted(snap.alarms.channels.items()):
        m = ch.modem
        if m is None:
            continue
        entry = out.setdefault(
            m.port,
            {
                "state": "ok" if m.ok else m.problem,
                "sim": m.sim,
                "registered": m.registered,
                "csq": m.csq,
                "operator": m.operator,
                "checked": m.checked,
                "last_send": m.last_send,
                "resets": m.resets,
                "channels": [],
            },
        )
        entry["channels"].append(cid)
    return out


def _input_state(i: InputState) -> str:
    if i.running is None:
        return "unknown"
    return "running" if i.running else f"not running: {i.reason or 'stopped'}"


def dead_lettered(snap: GatewaySnapshot) -> dict[str, dict[str, int]]:
    """Rows each sink's server refused for good, by lane: only sinks and lanes with some."""
    sinks = {"mqtt": snap.mqtt, "influx": snap.influx}
    out = {
        name: {lane: n for lane, n in part.dead_by_lane.items() if n}
        for name, part in sinks.items()
        if part is not None
    }
    return {name: lanes for name, lanes in out.items() if lanes}


def health(snap: GatewaySnapshot) -> tuple[int, dict[str, Any]]:
    """The HTTP status (200 or 503) and the health document."""
    comps = components(snap)
    failing = sorted(name for name, c in comps.items() if not c["ok"])
    gw = snap.gateway
    status = "starting" if not gw.ready else "degraded" if failing else "ok"
    open_alarms = snap.alarms.open
    doc: dict[str, Any] = {
        "status": status,
        "failing": failing,
        "gateway": {
            "site_id": gw.site_id,
            "gateway_id": gw.gateway_id,
            "version": gw.version,
            "uptime_s": round(gw.uptime_s, 1),
        },
        "clock_synced": gw.clock_synced,
        "components": comps,
        "devices": {
            d.id: "unknown" if d.online is None else ("online" if d.online else "offline")
            for d in snap.devices
        },
        "disabled": {d.id: sorted(d.disabled) for d in snap.devices if d.disabled},
        "offline": {d.id: d.reason for d in snap.devices if d.online is False},
        "inputs": {
            i.id: {"kind": i.kind, "state": _input_state(i), "alarm": i.alarmed}
            for i in snap.inputs.devices
        },
        "unmatched": dict(snap.inputs.unmatched),
        "rejected": {
            name: {reason: n for reason, n in sorted(counts.items()) if n}
            for name, counts in sorted(snap.inputs.rejects.items())
            if any(counts.values())
        },
        "backlog": dict(snap.store.backlog),
        "dead_lettered": dead_lettered(snap),
        "alarms": {
            "open": len(open_alarms),
            "unacknowledged": sum(1 for a in open_alarms if a.unacknowledged),
            "worst": max(
                (a.severity for a in open_alarms if a.unacknowledged),
                key=SEVERITY_RANK.__getitem__,
                default=None,
            ),
        },
        "uplink": "up" if _up(snap.mqtt) else "down",
        "modems": modems(snap),
        "reloads": {"ok": gw.reloads, "refused": gw.reload_failures},
    }
    if (w := snap.welfare) is not None:  # counts only: which household is quiet is the API's
        doc["welfare"] = {"watched": w.watched, "quiet": w.quiet, "absent": w.absent,
                          "paused": w.paused}  # fmt: skip
    return (200 if status == "ok" else 503), doc


def status_line(snap: GatewaySnapshot) -> str:
    """One line for ``systemctl status``: devices, uplink, backlog, open alarms."""
    online = sum(1 for d in snap.devices if d.online)
    uplink = "up" if _up(snap.mqtt) else "down"
    backlog = snap.store.backlog.get("mqtt", 0)
    disabled = sum(len(d.disabled) for d in snap.devices)
    return (
        f"{online}/{len(snap.devices)} devices online"
        + (f" ({disabled} points disabled)" if disabled else "")
        + f", uplink {uplink}, backlog {backlog}, {len(snap.alarms.open)} open alarms"
    )
