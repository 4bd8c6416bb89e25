"""The ``mqtt_button`` kind: every MQTT button in one group, one local-broker session.

Its dedup memory (``<store>.button-ids.json``) is the group's pipeline stage: a repeated
event id is dropped there and counted as the component's ``duplicate`` reject.
"""

from drivers.base import DriverGroup, GroupPlan, Ports, config_key
from drivers.mqtt.buttons import MqttButtons
from gateway.config.models import Config
from gateway.config.mqtt_devices import MqttButtonConfig
from gateway.pipeline.dedup import Dedup


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
            client_id=broker.client_id_for(cfg.gateway.site_id, cfg.gateway.gateway_id),
            clock=ports.clock,
            profile_dirs=cfg.profile_dirs,
            count=ports.count,
            settled=ports.settled,
        )
        path = cfg.store.path.with_name(cfg.store.path.name + ".button-ids.json")
        windows = {b.id: (b.dedup_window, b.dedup_size) for b in buttons}
        dedup = Dedup.open(path, windows, ports.clock, ports.settled)

        return DriverGroup(
            streams=[("driver:mqtt_buttons", component)],
            probes={"local_broker:buttons": component.connected.is_set},
            rejects={"mqtt_buttons": lambda: dedup.merged(component.rejected)},
            closers=[dedup.memory.close],
            stages=[dedup],
        )

    return [GroupPlan("mqtt_buttons", key, build)]
