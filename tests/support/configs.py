"""Typed access to config parts in tests."""

from gateway.config.modbus import ModbusDeviceConfig
from gateway.config.models import DeviceConfig


def as_modbus(device: DeviceConfig) -> ModbusDeviceConfig:
    """The device, known to be a Modbus device."""
    assert isinstance(device, ModbusDeviceConfig), device
    return device
