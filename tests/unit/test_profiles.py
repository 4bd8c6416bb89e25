"""The shipped device profiles (gateway/profiles/*.yaml, package data) load, validate and merge
as documented, and a site's own profile of the same name shadows a shipped one."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from gateway.config.loader import BUILTIN_PROFILES, load_profile, validate
from gateway.config.modbus import REGISTER_COUNT, ModbusDeviceConfig, PointConfig
from tests.support.configs import as_modbus

PROFILES = sorted(BUILTIN_PROFILES.glob("*.yaml"))
ASCII_UNITS = {"ug/m3", "dB(A)", "degC", "%RH", "ppm", "kPa", "lux"}


def _points(path: Path) -> list[PointConfig]:
    return [PointConfig.model_validate(p) for p in load_profile(path)["points"]]


def test_the_documented_profiles_ship() -> None:
    names = {p.stem for p in PROFILES}
    assert {"pm-laser-rs485", "noise-rs485", "th-rs485", "env-station-rs485"} <= names


def test_the_profiles_are_package_data() -> None:
    shipped = resources.files("gateway.profiles")
    assert Path(str(shipped)) == BUILTIN_PROFILES
    assert BUILTIN_PROFILES.is_relative_to(Path(str(resources.files("gateway"))))
    for sub in ("", "doors", "mqtt"):  # Modbus maps, door and button payload mappings
        assert any(f.name.endswith(".yaml") for f in shipped.joinpath(sub).iterdir())


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_loads_and_validates(path: Path) -> None:
    data = load_profile(path)
    assert data["name"] == path.stem
    for key in ("description", "vendor", "model", "notes"):
        assert isinstance(data[key], str)
        assert data[key].strip()
    points = _points(path)
    assert points
    # the profile's read limits are valid device settings, and every point fits one read
    device = ModbusDeviceConfig.model_validate(
        {
            "kind": "modbus",
            "id": "dev",
            "bus": "rs485",
            "unit_id": 1,
            "points": [p.model_dump() for p in points],
            **{k: data[k] for k in ("max_block", "max_gap") if k in data},
        }
    )
    assert all(p.count <= device.max_block for p in points)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_points_are_complete_and_disjoint(path: Path) -> None:
    used: dict[tuple[str, int], str] = {}
    for p in _points(path):
        assert p.enabled
        assert p.description
        assert p.unit in ASCII_UNITS
        assert p.range is not None, f"{p.name}: a profile states the physical range"
        for addr in range(p.address, p.address + REGISTER_COUNT[p.type]):
            other = used.setdefault((p.table, addr), p.name)
            assert other == p.name, f"{p.name} overlaps {other} at {p.table} {addr}"


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_header_documents_the_wiring(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert text.startswith(f"# Profile {path.stem}:")
    assert re.search(r"(4800|9600) baud, 8N1", header)
    assert "unit (slave) id 1" in header
    assert "datasheet" in header
    for p in _points(path):
        assert f"0x{p.address:04X}" in header, f"{p.name}: register table lists its address"


def _config(tmp_path: Path, device: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": {"site_id": "site", "gateway_id": "gw"},
        "store": {"path": str(tmp_path / "store.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "buses": [{"kind": "modbus_rtu", "id": "rs485", "port": "/dev/ttyUSB0"}],
        "devices": [{"kind": "modbus", "id": "dev", "bus": "rs485", "unit_id": 1, **device}],
    }


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_device_takes_profile_points_and_limits(tmp_path: Path, path: Path) -> None:
    data = load_profile(path)
    cfg = validate(_config(tmp_path, {"profile": path.stem}), tmp_path)
    dev = as_modbus(cfg.devices[0])
    assert dev.points == _points(path)
    assert dev.max_block == data.get("max_block", 125)
    assert dev.max_gap == data.get("max_gap", 0)


def test_device_overrides_disables_and_adds_points(tmp_path: Path) -> None:
    device = {
        "profile": "env-station-rs485",
        "max_gap": 0,
        "points": [
            {"name": "pm25", "address": 20},  # moved on this model
            {"name": "illuminance", "enabled": False},  # element not fitted
            {"name": "status", "table": "discrete", "address": 0, "type": "bool"},  # extra
        ],
    }
    dev = as_modbus(validate(_config(tmp_path, device), tmp_path).devices[0])
    by_name = {p.name: p for p in dev.points}
    assert by_name["pm25"].address == 20
    assert by_name["pm25"].type == "float32"  # the rest of the profile point is kept
    assert by_name["pm25"].word_order == "little"
    assert not by_name["illuminance"].enabled
    assert "illuminance" not in {p.name for p in dev.active_points}
    assert by_name["status"].table == "discrete"
    assert dev.max_gap == 0  # the device's own value wins
    assert dev.max_block == 32  # the profile's value applies


@pytest.mark.parametrize("folder", ["profiles", "site-profiles"])
def test_a_site_profile_shadows_the_shipped_one(tmp_path: Path, folder: str) -> None:
    site = "name: th-rs485\npoints:\n  - name: lux\n    table: input\n    address: 7\n"
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "th-rs485.yaml").write_text(site)
    doc = {**_config(tmp_path, {"profile": "th-rs485"}), "profile_dirs": ["site-profiles"]}
    dev = as_modbus(validate(doc, tmp_path).devices[0])
    assert [(p.name, p.address) for p in dev.points] == [("lux", 7)]
