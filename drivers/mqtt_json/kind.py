"""The ``mqtt_json`` kind: every entry in one group, one local-broker session.

Its readings are ``RawSample``s: the common pipeline scales and judges them by the entry's
points (``gateway.pipeline.scale``), so the kind needs no stage of its own.
"""

from drivers.base import DriverGroup, GroupPlan, Ports, config_key
from drivers.mqtt_json.devices import JsonDevices
from gateway.config.models import Config
from gateway.config.mqtt_json import MqttJsonDeviceConfig

PROBE = "local_broker:json"


def plan(cfg: Config, ports: Ports) -> list[GroupPlan]:
    """One group for all entries (one persistent session on the local broker)."""
    entries = [d for d in cfg.devices if isinstance(d, MqttJsonDeviceConfig)]
    if not entries:
        return []
    broker = cfg.local_broker
    assert broker is not None  # the loader insists on one
    site, gateway = cfg.gateway.site_id, cfg.gateway.gateway_id
    key = config_key(broker.model_dump(mode="json"), [d.model_dump(mode="json") for d in entries])

    def build() -> DriverGroup:
        component = JsonDevices(
            broker,
            entries,
            # not the buttons' or the doors' client id: two sessions with one id throw each
            # other off
            client_id=broker.client_id_for(site, gateway) + "-json",
            clock=ports.clock,
            count=ports.count,
            gauge=ports.gauge,
        )
        return DriverGroup(
            streams=[("driver:mqtt_json", component)],
            probes={PROBE: component.connected.is_set},
            rejects={"mqtt_json": lambda: dict(component.rejected)},
        )

    return [GroupPlan("mqtt_json", key, build)]
