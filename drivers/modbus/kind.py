"""The ``modbus`` kind: one group per bus, one polled ``ModbusDevice`` per configured device.

The devices of a bus share its lock (and, on RS-485, its line), so they restart together.
"""

import functools

from drivers.base import DriverGroup, GroupPlan, PollSchedule, Ports, config_key
from drivers.modbus.bus import Bus
from drivers.modbus.device import ModbusDevice
from gateway.config.modbus import ModbusDeviceConfig, ModbusRtuBusConfig, ModbusTcpBusConfig
from gateway.config.models import Config


def plan(cfg: Config, ports: Ports) -> list[GroupPlan]:
    """One group per bus that has devices."""
    out = []
    for bus in cfg.buses:
        devs = [d for d in cfg.devices if isinstance(d, ModbusDeviceConfig) and d.bus == bus.id]
        if devs:
            key = config_key(bus.model_dump(mode="json"), [d.model_dump(mode="json") for d in devs])
            build = functools.partial(_group, bus, devs, ports)
            out.append(GroupPlan(f"modbus:{bus.id}", key, build))
    return out


def _group(
    bus: ModbusTcpBusConfig | ModbusRtuBusConfig, devs: list[ModbusDeviceConfig], ports: Ports
) -> DriverGroup:
    shared = Bus(bus)
    group = DriverGroup(closers=[shared.close])
    for d in devs:
        schedule = PollSchedule(d.interval, d.offline_after, d.backoff_max)
        group.polled.append((ModbusDevice(d, shared, ports.clock), schedule))
    return group
