"""The explicit map from a device's config ``kind`` to the factory that plans its groups.

No entry points, no subclass discovery: a new kind is its package (drivers, a ``plan``
function, see ``drivers.base``), its config model, and one line here. Only the composition
root (``gateway.runtime.root``) reads this map.
"""

from collections.abc import Callable

from drivers.base import GroupPlan, Ports
from drivers.doors import kind as doors
from drivers.gpio import kind as gpio
from drivers.http_push import kind as http_push
from drivers.modbus import kind as modbus
from drivers.mqtt import kind as mqtt
from drivers.mqtt_json import kind as mqtt_json
from gateway.config.models import Config

Factory = Callable[[Config, Ports], list[GroupPlan]]

KINDS: dict[str, Factory] = {
    "modbus": modbus.plan,
    "mqtt_button": mqtt.plan,
    "gpio": gpio.plan,
    "door_terminal": doors.plan,
    "mqtt_json": mqtt_json.plan,
    "http_push": http_push.plan,
}


def plan(cfg: Config, ports: Ports, kinds: dict[str, Factory] | None = None) -> list[GroupPlan]:
    """Every driver group ``cfg`` asks for, by the factory of each kind it configures.

    Raises ``KeyError`` for a kind with no factory (the config models only admit known ones).
    """
    factories = KINDS if kinds is None else kinds
    return [
        g for kind in sorted({d.kind for d in cfg.devices}) for g in factories[kind](cfg, ports)
    ]
