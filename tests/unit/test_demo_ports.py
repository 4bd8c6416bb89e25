"""The demo's listeners get distinct ports (two ports picked one after the other can be equal)."""

from __future__ import annotations

from pathlib import Path

from gateway.cli import demo as run
from tests.support.ports import free_ports


def test_the_demo_picks_distinct_ports_that_avoid_the_broker() -> None:
    broker = run._free_port()
    for _ in range(200):
        ports = run._free_ports(2, avoid=broker)
        assert len(set(ports)) == 2
        assert broker not in ports


def test_the_test_helper_picks_distinct_ports() -> None:
    for _ in range(200):
        assert len(set(free_ports(3))) == 3


def test_the_demo_config_gives_the_api_and_the_monitor_their_own_ports(tmp_path: Path) -> None:
    doc = run._config(tmp_path, broker=1883, modbus=5020)
    ports = {doc["api"]["port"], doc["monitor"]["port"], 1883}
    assert len(ports) == 3
