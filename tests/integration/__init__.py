"""Integration (real peers: pymodbus server, socat ptys, mosquitto) tests."""
