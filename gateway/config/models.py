"""The root config model: identity, store, upstream, buses and devices."""

from pathlib import Path
from typing import Annotated, Self

from pydantic import ByteSize, Field, field_validator, model_validator

from gateway.config.alarms import AlarmsConfig, ContactRuleConfig
from gateway.config.api import ApiConfig
from gateway.config.base import Model, Name
from gateway.config.broker import BrokerConfig
from gateway.config.commands import CommandsConfig
from gateway.config.console import ConsoleConfig
from gateway.config.doors import DoorTerminalConfig
from gateway.config.gpio import GpioDeviceConfig
from gateway.config.http_push import HttpPushDeviceConfig, PushListenerConfig
from gateway.config.influx import InfluxConfig
from gateway.config.modbus import BusConfig, ModbusDeviceConfig
from gateway.config.monitor import MonitorConfig
from gateway.config.mqtt_devices import LocalBrokerConfig, MqttButtonConfig
from gateway.config.mqtt_json import MqttJsonDeviceConfig
from gateway.config.notify import AnyChannelConfig
from gateway.config.records import RecordsConfig
from gateway.config.reports import ReportsConfig
from gateway.config.secret_keys import PrivacyConfig
from gateway.config.welfare import WelfareConfig

# Every device kind, in one place: the config's `kind` picks the model (and the driver).
DeviceConfig = Annotated[
    (
        ModbusDeviceConfig
        | MqttButtonConfig
        | GpioDeviceConfig
        | DoorTerminalConfig
        | MqttJsonDeviceConfig
        | HttpPushDeviceConfig
    ),
    Field(discriminator="kind"),
]


class IdentityConfig(Model):
    """Who this gateway is; both ids appear in every upstream topic."""

    site_id: Name = Field(description="The community (site) id")
    gateway_id: Name = Field(description="This gateway's id, unique within the platform")


class StoreConfig(Model):
    """The local store-and-forward buffer (SQLite, WAL)."""

    path: Path = Field(description="Database file; its directory must be writable")
    quota: ByteSize = Field(
        ByteSize(256 * 1024**2),
        description="Bytes of buffered messages kept at most (e.g. '256MiB'); when full, the "
        "oldest telemetry is evicted and reported as a gap",
    )
    reserve: ByteSize = Field(
        ByteSize(16 * 1024**2),
        description="Part of the quota only alarms and events may use",
    )
    commit_interval: float = Field(
        1.0, gt=0, le=10, description="Telemetry is committed in groups at least this often (s)"
    )

    @model_validator(mode="after")
    def _reserve_fits(self) -> Self:
        if self.quota < 64 * 1024:
            raise ValueError(f"quota {self.quota} B is below the 64 KiB minimum")
        if self.reserve >= self.quota:
            raise ValueError(
                f"reserve ({self.reserve} B) must be smaller than quota ({self.quota} B)"
            )
        return self


class MqttConfig(BrokerConfig):
    """The upstream MQTT broker of the central platform."""

    host: str = Field(min_length=1, description="Broker host")
    client_id: str | None = Field(
        None, min_length=1, max_length=64, description="Default cgw-<site_id>-<gateway_id>"
    )
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive (s)")
    topic_root: str = Field(
        "cgw",
        min_length=1,
        max_length=64,
        description="Topic root: <root>/<site>/<gateway>/...; no wildcards or outer slashes",
    )
    max_inflight: int = Field(100, ge=1, le=1000, description="QoS 1 publishes awaiting PUBACK")
    telemetry_inflight: int = Field(
        20,
        ge=1,
        le=1000,
        description="How many of those telemetry may hold: the rest stays free for alarms and "
        "events, so an alarm never queues behind a full window of backlog",
    )
    publish_timeout: float = Field(15.0, gt=0, le=120, description="Seconds to wait for a PUBACK")
    connect_timeout: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Seconds a connect attempt may take: the TCP connect and TLS handshake, "
        "then the CONNACK; a black-holed uplink costs one attempt of this length at a time",
    )

    @field_validator("topic_root")
    @classmethod
    def _topic_root(cls, root: str) -> str:
        bad = [c for c in ("#", "+", " ", "\0") if c in root]
        if bad:
            raise ValueError(f"{root!r} contains {bad[0]!r}: wildcards and spaces are not allowed")
        if root.startswith("/") or root.endswith("/") or "//" in root:
            raise ValueError(f"{root!r}: no leading, trailing or double '/'")
        return root


class UpstreamConfig(Model):
    """Where messages go."""

    mqtt: MqttConfig = Field(description="The platform's MQTT broker")
    influx: InfluxConfig | None = Field(
        None, description="InfluxDB-compatible time-series sink for telemetry; off if omitted"
    )


class Config(Model):
    """The whole gateway configuration (one YAML file)."""

    gateway: IdentityConfig = Field(description="Identity")
    store: StoreConfig = Field(description="Local buffer")
    upstream: UpstreamConfig = Field(description="Upstream sinks")
    local_broker: LocalBrokerConfig | None = Field(
        None,
        description="The community's local MQTT broker (buttons, door terminals, mqtt_json)",
    )
    buses: list[BusConfig] = Field(default_factory=list, description="Field buses")
    devices: list[DeviceConfig] = Field(default_factory=list, description="Devices")
    alarms: AlarmsConfig = Field(
        default_factory=AlarmsConfig, description="Alarm rules, escalation ladders, storm control"
    )
    channels: list[AnyChannelConfig] = Field(
        default_factory=list, description="Staff notification channels that ladders name"
    )
    api: ApiConfig | None = Field(
        None, description="Local alarm API for the staff console and 'cgw alarms'; off if omitted"
    )
    console: ConsoleConfig | None = Field(
        None, description="The field console: duty, devices, commissioning, status; off if omitted"
    )
    http_push: PushListenerConfig | None = Field(
        None, description="The listener http_push devices post to; needed by any such device"
    )
    records: RecordsConfig | None = Field(
        None, description="Record kinds data-collection terminals post, field by field, classed"
    )
    privacy: PrivacyConfig | None = Field(
        None, description="The per-site key that pseudonymises resident ids (door terminals)"
    )
    commands: CommandsConfig | None = Field(
        None, description="Signed commands from the platform on cmd/<name>; off if omitted"
    )
    monitor: MonitorConfig | None = Field(
        None, description="Health and Prometheus metrics endpoint (loopback); off if omitted"
    )
    reports: ReportsConfig = Field(
        default_factory=ReportsConfig,
        description="Proof of service: the daily availability and response reports upstream",
    )
    welfare: WelfareConfig | None = Field(
        None, description="Welfare checks of households that opted in; off if omitted"
    )
    profile_dirs: list[Path] = Field(
        default_factory=list,
        description="Extra folders with device profiles, searched before <config dir>/profiles",
    )
    log_level: str = Field("INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Log level")

    @property
    def terminals(self) -> list[DoorTerminalConfig]:
        """Every door terminal config: over the broker, and pushing by HTTP."""
        return [
            d.as_terminal() if isinstance(d, HttpPushDeviceConfig) else d
            for d in self.devices
            if isinstance(d, DoorTerminalConfig)
            or (isinstance(d, HttpPushDeviceConfig) and d.door is not None)
        ]

    @property
    def json_entries(self) -> list[MqttJsonDeviceConfig]:
        """Every mqtt_json mapping: over the broker, and pushing readings by HTTP."""
        return [
            d.as_json() if isinstance(d, HttpPushDeviceConfig) else d
            for d in self.devices
            if isinstance(d, MqttJsonDeviceConfig)
            or (isinstance(d, HttpPushDeviceConfig) and d.readings is not None)
        ]

    @property
    def fire_rules(self) -> set[str]:
        """Ids of the contact rules of type ``fire`` (their alarms release the escape routes)."""
        return {
            r.id for r in self.alarms.rules if isinstance(r, ContactRuleConfig) and r.type == "fire"
        }

    @property
    def escape_routes(self) -> list[str]:
        """Ids of the doors configured as escape routes (released while a fire alarm is open)."""
        return [door.id for dev in self.terminals for door in dev.doors if door.escape_route]
