"""Modbus RTU and TCP: buses, merged block reads, decoding, and the device simulator."""
