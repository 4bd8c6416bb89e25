"""Prometheus metrics of a running gateway, read from its components at scrape time.

Contract:
- A custom ``prometheus_client`` collector: no metric object is updated on the hot path;
  each scrape takes one ``GatewaySnapshot`` (from the port it is given) and renders the
  counters the components already keep. Counters never go backwards while the process
  runs, except those of a component restarted by a reload (its own counters start over, as
  a Prometheus counter reset handles).
- Labels are ids from the config (device, sink, input, reason, severity): bounded.
- ``render(registry)`` returns the text exposition format (version 0.0.4); the process
  collector adds ``process_resident_memory_bytes`` and friends.
"""

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.ops.snapshot import GatewaySnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES = ("critical", "warning", "info")


class GatewayCollector(Collector):
    """Takes one snapshot of the gateway on every ``collect`` and renders its figures."""

    def __init__(self, snapshot: Callable[[], GatewaySnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        gw = snap.gateway
        info = GaugeMetricFamily(
            "cgw_info", "The gateway's identity and version", labels=["site", "gateway", "version"]
        )
        info.add_metric([gw.site_id, gw.gateway_id, gw.version], 1)
        yield info
        yield GaugeMetricFamily("cgw_ready", "1 once the local alarm path is up", int(gw.ready))
        tasks = _tasks()
        if tasks is not None:
            yield GaugeMetricFamily("cgw_tasks", "asyncio tasks alive (flat while steady)", tasks)
        yield GaugeMetricFamily(
            "cgw_clock_synced",
            "1 once NTP has set the clock (platform commands are refused before)",
            int(gw.clock_synced),
        )
        yield from _devices(snap)
        yield from _sinks(snap)
        yield from _store(snap)
        yield from _alarms(snap)
        rejected = CounterMetricFamily(
            "cgw_input_rejected", "Input messages rejected, by reason", labels=["input", "reason"]
        )
        for name, counts in snap.inputs.rejects.items():
            for reason, n in sorted(counts.items()):
                rejected.add_metric([name, reason], n)
        yield rejected
        yield from _inputs(snap)
        yield from _commands(snap)
        yield from _console(snap)
        if (w := snap.welfare) is not None:
            households = GaugeMetricFamily(
                "cgw_welfare_households",
                "Households of the welfare checks: watched, quiet too long, absent, paused",
                labels=["state"],
            )
            for state, n in (("watched", w.watched), ("quiet", w.quiet), ("absent", w.absent),
                             ("paused", w.paused)):  # fmt: skip
                households.add_metric([state], n)
            yield households
        reloads = CounterMetricFamily(
            "cgw_config_reloads", "Config reloads, by result", labels=["result"]
        )
        reloads.add_metric(["applied"], gw.reloads)
        reloads.add_metric(["refused"], gw.reload_failures)
        yield reloads


def _tasks() -> int | None:
    """asyncio tasks of the running loop; None when scraped off the event loop."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return None


def _console(snap: GatewaySnapshot) -> Iterator[Metric]:
    console = snap.console
    if console is None:
        return
    yield GaugeMetricFamily("cgw_console_sessions", "Open field console sessions", console.sessions)
    yield GaugeMetricFamily(
        "cgw_console_streams", "Console pages following the live stream now", console.streams
    )
    yield CounterMetricFamily(
        "cgw_console_streams_dropped",
        "Console live streams ended for not keeping up (the page reconnects)",
        console.streams_dropped,
    )
    logins = CounterMetricFamily(
        "cgw_console_logins", "Console sign-ins, by result", labels=["result"]
    )
    logins.add_metric(["ok"], console.logins_ok)
    logins.add_metric(["failed"], console.logins_failed)
    logins.add_metric(["throttled"], console.throttled)
    yield logins
    if console.cert_ends is not None:
        yield GaugeMetricFamily(
            "cgw_console_certificate_expiry_timestamp_seconds",
            "When the console's HTTPS certificate runs out (UNIX time)",
            console.cert_ends,
        )


def _commands(snap: GatewaySnapshot) -> Iterator[Metric]:
    commands = snap.commands
    rejected = CounterMetricFamily(
        "cgw_commands_rejected", "Platform commands not executed, by reason", labels=["reason"]
    )
    if commands.running:
        yield CounterMetricFamily(
            "cgw_commands_executed", "Platform commands executed", commands.executed
        )
        yield CounterMetricFamily(
            "cgw_commands_unaudited",
            "Rejections of unsigned messages counted but not audited (rate limit)",
            commands.unaudited,
        )
        for reason, n in sorted(commands.rejected.items()):
            rejected.add_metric([reason], n)
        received = CounterMetricFamily(
            "cgw_commands_received", "Platform commands read, by wire form", labels=["form"]
        )
        for form, n in sorted(commands.received.items()):
            received.add_metric([form], n)
        yield received
    if commands.dropped:
        rejected.add_metric(["not_running"], commands.dropped)
    yield rejected
    if snap.linkage is not None:
        yield GaugeMetricFamily(
            "cgw_fire_linkage_active", "1 while escape routes are held released",
            int(snap.linkage.active),
        )  # fmt: skip
        yield CounterMetricFamily(
            "cgw_fire_linkage_unlocks", "Unlocks sent to escape routes", snap.linkage.unlocks_sent
        )


def _inputs(snap: GatewaySnapshot) -> Iterator[Metric]:
    running = GaugeMetricFamily(
        "cgw_input_running",
        "1 while an input device runs (GPIO pins open, broker session subscribed, device online)",
        labels=["device", "kind", "alarm"],
    )
    for i in snap.inputs.devices:
        if i.running is not None:
            running.add_metric([i.id, i.kind, str(i.alarmed).lower()], int(i.running))
    unmatched = CounterMetricFamily(
        "cgw_contacts_unmatched", "Contacts no contact rule names (no alarm)", labels=["device"]
    )
    for device, n in sorted(snap.inputs.unmatched.items()):
        unmatched.add_metric([device], n)
    yield from (running, unmatched)


def _devices(snap: GatewaySnapshot) -> Iterator[Metric]:
    online = GaugeMetricFamily("cgw_device_online", "1 online, 0 offline", labels=["device"])
    polls = CounterMetricFamily("cgw_device_polls", "Polls done", labels=["device"])
    failed = CounterMetricFamily(
        "cgw_device_poll_failures", "Polls that got no answer", labels=["device"]
    )
    seconds = CounterMetricFamily(
        "cgw_device_poll_seconds", "Time spent polling (sum over polls)", labels=["device"]
    )
    last = GaugeMetricFamily(
        "cgw_device_poll_latency_seconds", "Duration of the last poll", labels=["device"]
    )
    bad = CounterMetricFamily(
        "cgw_device_bad_frames", "Answers that did not fit their request", labels=["device"]
    )
    implausible = CounterMetricFamily(
        "cgw_device_implausible",
        "Readings outside their point's physical range (quality bad): a wrong unit id or profile",
        labels=["device"],
    )
    disabled = GaugeMetricFamily(
        "cgw_device_point_disabled",
        "1 for a point the device refused (read again on a slow schedule)",
        labels=["device", "point"],
    )
    for d in snap.devices:
        dev = [d.id]
        if d.online is not None:
            online.add_metric(dev, int(d.online))
        polls.add_metric(dev, d.polls)
        failed.add_metric(dev, d.failed_polls)
        seconds.add_metric(dev, d.latency_sum)
        last.add_metric(dev, d.last_latency)
        bad.add_metric(dev, d.bad_frames)
        implausible.add_metric(dev, d.implausible)
        for point in sorted(d.disabled):
            disabled.add_metric([d.id, point], 1)
    yield from (online, polls, failed, seconds, last, bad, implausible, disabled)


def _sinks(snap: GatewaySnapshot) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "cgw_sink_backlog_rows", "Rows the sink has not confirmed", labels=["sink"]
    )
    for sink, rows in snap.store.backlog.items():
        backlog.add_metric([sink], rows)
    connected = GaugeMetricFamily("cgw_sink_connected", "1 when connected", labels=["sink"])
    delivered = CounterMetricFamily(
        "cgw_sink_delivered", "Messages (MQTT) or rows (InfluxDB) confirmed", labels=["sink"]
    )
    reconnects = CounterMetricFamily(
        "cgw_sink_reconnects", "Connections lost or refused", labels=["sink"]
    )
    dead = CounterMetricFamily(
        "cgw_sink_dead_lettered", "Rows the server refused for good", labels=["sink", "lane"]
    )
    retries = CounterMetricFamily("cgw_sink_retries", "Failed writes retried", labels=["sink"])
    provisional = CounterMetricFamily(
        "cgw_sink_provisional",
        "Alarm transitions published without a seq: the store could not take them",
        labels=["sink"],
    )
    if snap.mqtt is not None:
        connected.add_metric(["mqtt"], int(snap.mqtt.connected))
        delivered.add_metric(["mqtt"], snap.mqtt.delivered)
        reconnects.add_metric(["mqtt"], snap.mqtt.reconnects)
        provisional.add_metric(["mqtt"], snap.mqtt.provisional)
        for lane, n in snap.mqtt.dead_by_lane.items():
            dead.add_metric(["mqtt", lane], n)
    if snap.influx is not None:
        connected.add_metric(["influx"], int(snap.influx.connected))
        delivered.add_metric(["influx"], snap.influx.delivered)
        for lane, n in snap.influx.dead_by_lane.items():
            dead.add_metric(["influx", lane], n)
        retries.add_metric(["influx"], snap.influx.retries)
    yield from (backlog, connected, delivered, reconnects, dead, retries, provisional)


def _store(snap: GatewaySnapshot) -> Iterator[Metric]:
    st = snap.store.stats
    yield GaugeMetricFamily("cgw_store_used_bytes", "Bytes of buffered messages", st.used_bytes)
    yield GaugeMetricFamily(
        "cgw_store_quota_bytes",
        "The byte quota in effect (lower on a small or full disk)",
        st.quota_bytes,
    )
    yield GaugeMetricFamily(
        "cgw_store_writable",
        "1 while the store takes writes; 0 on a full disk",
        int(not st.problem),
    )
    yield CounterMetricFamily("cgw_store_evicted", "Telemetry rows evicted", st.evicted)
    yield CounterMetricFamily(
        "cgw_store_dropped", "Telemetry dropped at the memory bound", st.dropped
    )
    yield CounterMetricFamily(
        "cgw_store_quarantined", "Corrupt database files moved aside", st.quarantined
    )
    yield CounterMetricFamily(
        "cgw_store_purged", "Personal-data rows deleted at the end of retention", st.purged
    )
    size = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            size += os.stat(f"{snap.store.path}{suffix}").st_size
    yield GaugeMetricFamily("cgw_store_file_bytes", "Database and WAL file size", size)


def _alarms(snap: GatewaySnapshot) -> Iterator[Metric]:
    open_ = GaugeMetricFamily("cgw_alarms_open", "Open alarms", labels=["severity"])
    unacked = GaugeMetricFamily(
        "cgw_alarms_unacknowledged", "Open alarms nobody acknowledged", labels=["severity"]
    )
    alarms = snap.alarms.open
    for sev in SEVERITIES:
        open_.add_metric([sev], sum(1 for a in alarms if a.severity == sev))
        unacked.add_metric([sev], sum(1 for a in alarms if a.severity == sev and a.unacknowledged))
    acks = CounterMetricFamily(
        "cgw_alarm_acknowledged", "Alarms acknowledged since start", labels=["severity"]
    )
    tta = CounterMetricFamily(
        "cgw_alarm_time_to_ack_seconds",
        "Sum of times to acknowledge since start (divide by cgw_alarm_acknowledged_total)",
        labels=["severity"],
    )
    for sev in SEVERITIES:
        n, total = snap.alarms.acked.get(sev, (0, 0.0))
        acks.add_metric([sev], n)
        tta.add_metric([sev], total)
    yield from (open_, unacked, acks, tta)
    yield CounterMetricFamily(
        "cgw_alarm_samples_dropped",
        "Readings the alarm engine refused while too many waited (contacts never are)",
        snap.alarms.samples_dropped,
    )
    yield from _channels(snap)


def _channels(snap: GatewaySnapshot) -> Iterator[Metric]:
    sent = CounterMetricFamily(
        "cgw_notify_delivered", "Staff messages delivered, by channel", labels=["channel"]
    )
    failed = CounterMetricFamily(
        "cgw_notify_failed", "Staff messages not delivered after every retry", labels=["channel"]
    )
    down = GaugeMetricFamily(
        "cgw_notify_channel_down", "1 after 3 failed messages in a row", labels=["channel"]
    )
    last = GaugeMetricFamily(
        "cgw_notify_last_success_timestamp_seconds",
        "Wall time of the channel's last delivered message",
        labels=["channel"],
    )
    for cid, ch in sorted(snap.alarms.channels.items()):
        sent.add_metric([cid], ch.delivered)
        failed.add_metric([cid], ch.failed)
        down.add_metric([cid], int(ch.down))
        if ch.last_ok is not None:
            last.add_metric([cid], ch.last_ok)
    yield from (sent, failed, down, last)
    yield from _modems(snap)


def _modems(snap: GatewaySnapshot) -> Iterator[Metric]:
    port = ["port"]
    up = GaugeMetricFamily(
        "cgw_modem_up", "1 while the modem can send (SIM ready, registered)", labels=port
    )
    registered = GaugeMetricFamily(
        "cgw_modem_registered", "1 while on the mobile network", labels=port
    )
    csq = GaugeMetricFamily(
        "cgw_modem_signal_csq", "Signal quality, AT+CSQ 0-31 (absent: unknown)", labels=port
    )
    last = GaugeMetricFamily(
        "cgw_modem_last_send_timestamp_seconds",
        "Wall time of the last SMS or call that went through",
        labels=port,
    )
    resets = CounterMetricFamily(
        "cgw_modem_resets",
        "Faults that closed the modem's session or kept it from opening",
        labels=port,
    )
    info = GaugeMetricFamily(
        "cgw_modem_info", "The modem's operator and SIM state", labels=["port", "operator", "sim"]
    )
    seen: set[str] = set()
    for _, ch in sorted(snap.alarms.channels.items()):
        m = ch.modem
        if m is None or m.port in seen:
            continue
        seen.add(m.port)
        up.add_metric([m.port], int(m.ok))
        registered.add_metric([m.port], int(m.registered))
        if m.csq is not None:
            csq.add_metric([m.port], m.csq)
        if m.last_send is not None:
            last.add_metric([m.port], m.last_send)
        resets.add_metric([m.port], m.resets)
        info.add_metric([m.port, m.operator, m.sim], 1)
    yield from (up, registered, csq, last, resets, info)


def registry_for(snapshot: Callable[[], GatewaySnapshot]) -> CollectorRegistry:
    """A registry with the gateway's collector and the process collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(snapshot))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of everything in ``registry``."""
    return generate_latest(registry)
