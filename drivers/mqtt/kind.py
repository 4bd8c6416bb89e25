"""The ``mqtt_button`` kind: every MQTT button in one group, one local-broker session."""

from drivers.base import DriverGroup, GroupPlan, Ports, config_key
from drivers.mqtt.buttons import MqttButtons
from gateway.config.models import Config
from gateway.config.mqtt_devices import MqttButtonConfig


def plan(cfg: Config, ports: Ports) -> list[GroupPlan]:
    """One group for all buttons (one persistent session on the local broker)."""
    buttons = [d for d in cfg.devices if isinstance(d, MqttButtonConfig)]
    if not buttons:
        return []
    broker = cfg.local_broker
    assert broker is not None  # the loader insists on one
    key = config_key(
        broker.model_dump(mode="json"),
        [d.model_dump(mode="json") for d in buttons],
        [str(p) for p in cfg.profile_dirs],
    )

    def build() -> DriverGroup:
        component = MqttButtons(
            broker,
            buttons,
            cfg.store.path.with_name(cfg.store.path.name + ".button-ids.json"),
            client_id=broker.client_id_for(cfg.gateway.site_id, cfg.gateway.gateway_id),
            clock=ports.clock,
            profile_dirs=cfg.profile_dirs,
            count=ports.count,
        )
        return DriverGroup(
            streams=[("driver:mqtt_buttons", component)],
            probes={"local_broker:buttons": component.connected.is_set},
            rejects={"mqtt_buttons": lambda: dict(component.rejected)},
        )

    return [GroupPlan("mqtt_buttons", key, build)]
