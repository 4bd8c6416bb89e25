"""Prometheus metrics of a running gateway, read from its components at scrape time.

Contract:
- A custom ``prometheus_client`` collector: no metric object is updated on the hot path;
  each scrape reads the counters the components already keep. Counters never go backwards
  while the process runs, except those of a component restarted by a reload (its own
  counters start over, as a Prometheus counter reset handles).
- Labels are ids from the config (device, sink, input, reason, severity): bounded.
- ``render(rt)`` returns the text exposition format (version 0.0.4); the process collector
  adds ``process_resident_memory_bytes`` and friends.
"""

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.alarms.model import UNACKED

if TYPE_CHECKING:
    from gateway.runtime.root import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES = ("critical", "warning", "info")


class GatewayCollector(Collector):
    """Reads one runtime's figures on every ``collect``."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        info = GaugeMetricFamily(
            "cgw_info", "The gateway's identity and version", labels=["site", "gateway", "version"]
        )
        info.add_metric([rt.cfg.gateway.site_id, rt.cfg.gateway.gateway_id, __version__], 1)
        yield info
        yield GaugeMetricFamily(
            "cgw_ready", "1 once the local alarm path is up", int(rt.ready.is_set())
        )
        yield from self._devices()
        yield from self._sinks()
        yield from self._store()
        yield from self._alarms()
        rejected = CounterMetricFamily(
            "cgw_input_rejected", "Input messages rejected, by reason", labels=["input", "reason"]
        )
        for group in rt.groups.values():
            for name, counts in group.drivers.rejects.items():
                for reason, n in sorted(counts().items()):
                    rejected.add_metric([name, reason], n)
        yield rejected
        yield from self._commands()
        reloads = CounterMetricFamily(
            "cgw_config_reloads", "Config reloads, by result", labels=["result"]
        )
        reloads.add_metric(["applied"], rt.reloads)
        reloads.add_metric(["refused"], rt.reload_failures)
        yield reloads

    def _commands(self) -> Iterator[Metric]:
        rt = self.rt
        service = rt.commands
        rejected = CounterMetricFamily(
            "cgw_commands_rejected", "Platform commands not executed, by reason", labels=["reason"]
        )
        if service is not None:
            yield CounterMetricFamily(
                "cgw_commands_executed", "Platform commands executed", service.executed
            )
            yield CounterMetricFamily(
                "cgw_commands_unaudited",
                "Rejections of unsigned messages counted but not audited (rate limit)",
                service.unaudited,
            )
            for reason, n in sorted(service.rejected.items()):
                rejected.add_metric([reason], n)
        if rt.commands_dropped:
            rejected.add_metric(["not_running"], rt.commands_dropped)
        yield rejected
        if rt.linkage is not None:
            yield GaugeMetricFamily(
                "cgw_fire_linkage_active", "1 while escape routes are held released",
                int(rt.linkage.active),
            )  # fmt: skip
            yield CounterMetricFamily(
                "cgw_fire_linkage_unlocks", "Unlocks sent to escape routes", rt.linkage.unlocks_sent
            )

    def _devices(self) -> Iterator[Metric]:
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
        for p in self.rt.pollers:
            dev = [p.driver.id]
            if p.online is not None:
                online.add_metric(dev, int(p.online))
            polls.add_metric(dev, p.polls)
            failed.add_metric(dev, p.failed_polls)
            seconds.add_metric(dev, p.latency_sum)
            last.add_metric(dev, p.last_latency)
        yield from (online, polls, failed, seconds, last)

    def _sinks(self) -> Iterator[Metric]:
        rt = self.rt
        backlog = GaugeMetricFamily(
            "cgw_sink_backlog_rows", "Rows the sink has not confirmed", labels=["sink"]
        )
        if rt.store is not None:
            for sink in rt.store.sinks:
                backlog.add_metric([sink], rt.store.backlog(sink))
        connected = GaugeMetricFamily("cgw_sink_connected", "1 when connected", labels=["sink"])
        delivered = CounterMetricFamily(
            "cgw_sink_delivered", "Messages (MQTT) or rows (InfluxDB) confirmed", labels=["sink"]
        )
        reconnects = CounterMetricFamily(
            "cgw_sink_reconnects", "Connections lost or refused", labels=["sink"]
        )
        dead = CounterMetricFamily(
            "cgw_sink_dead_lettered", "Rows the server refused for good", labels=["sink"]
        )
        retries = CounterMetricFamily("cgw_sink_retries", "Failed writes retried", labels=["sink"])
        if rt.sink is not None:
            connected.add_metric(["mqtt"], int(rt.sink.connected.is_set()))
            delivered.add_metric(["mqtt"], rt.sink.published)
            reconnects.add_metric(["mqtt"], rt.sink.reconnects)
        if rt.influx is not None:
            connected.add_metric(["influx"], int(rt.influx.connected.is_set()))
            delivered.add_metric(["influx"], rt.influx.rows_written)
            dead.add_metric(["influx"], rt.influx.dead_lettered)
            retries.add_metric(["influx"], rt.influx.retries)
        yield from (backlog, connected, delivered, reconnects, dead, retries)

    def _store(self) -> Iterator[Metric]:
        store = self.rt.store
        if store is None:
            return
        st = store.stats()
        yield GaugeMetricFamily("cgw_store_used_bytes", "Bytes of buffered messages", st.used_bytes)
        yield GaugeMetricFamily("cgw_store_quota_bytes", "The byte quota", st.quota_bytes)
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
                size += os.stat(f"{store.path}{suffix}").st_size
        yield GaugeMetricFamily("cgw_store_file_bytes", "Database and WAL file size", size)

    def _alarms(self) -> Iterator[Metric]:
        engine = self.rt.alarms
        if engine is None:
            return
        open_ = GaugeMetricFamily("cgw_alarms_open", "Open alarms", labels=["severity"])
        unacked = GaugeMetricFamily(
            "cgw_alarms_unacknowledged", "Open alarms nobody acknowledged", labels=["severity"]
        )
        alarms = engine.open_alarms()
        for sev in SEVERITIES:
            open_.add_metric([sev], sum(1 for a in alarms if a.severity == sev))
            unacked.add_metric(
                [sev], sum(1 for a in alarms if a.severity == sev and a.state in UNACKED)
            )
        acks = CounterMetricFamily(
            "cgw_alarm_acknowledged", "Alarms acknowledged since start", labels=["severity"]
        )
        tta = CounterMetricFamily(
            "cgw_alarm_time_to_ack_seconds",
            "Sum of times to acknowledge since start (divide by cgw_alarm_acknowledged_total)",
            labels=["severity"],
        )
        for sev in SEVERITIES:
            n, total = engine.acked.get(sev, (0, 0.0))
            acks.add_metric([sev], n)
            tta.add_metric([sev], total)
        yield from (open_, unacked, acks, tta)


def registry_for(rt: "Runtime") -> CollectorRegistry:
    """A registry with the gateway's collector and the process collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(rt))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of everything in ``registry``."""
    return generate_latest(registry)
