"""The shipped example config validates once its secret files exist."""

import shutil
from pathlib import Path

from gateway.config import load_config
from tests.support.configs import as_modbus

REPO = Path(__file__).resolve().parents[2]


def test_example_config_is_valid(tmp_path: Path) -> None:
    cfg_path = tmp_path / "gateway.yaml"
    shutil.copy(REPO / "config" / "examples" / "gateway.yaml", cfg_path)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("platform-ca.crt", "gw-01.crt", "gw-01.key", "mqtt-password"):
        (secrets / name).write_text("x\n")
        (secrets / name).chmod(0o600)
    cfg = load_config(cfg_path)
    th = as_modbus(next(d for d in cfg.devices if d.id == "th-court"))
    points = {p.name: p for p in th.active_points}
    assert points["temperature"].table == "input"
    assert points["dew_point"].address == 2
    station = as_modbus(next(d for d in cfg.devices if d.id == "station-1"))
    assert "illuminance" not in {p.name for p in station.active_points}
    assert cfg.upstream.mqtt.tls is not None
    assert cfg.upstream.mqtt.tls.key_file == secrets / "gw-01.key"
