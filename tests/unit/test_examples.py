"""The annotated example config checks with the command its header gives, as written, and
still validates once the production secrets it shows commented out are put in place."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config import load_config
from tests.support.configs import as_modbus

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config" / "examples"
# a commented-out key whose value is a file of secrets/ (the example ships none: see its text)
SECRET_KEY = re.compile(r"^(\s*)# (\w+_file: secrets/\S+)", re.MULTILINE)


def test_the_header_command_works_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    header = (EXAMPLES / "gateway.yaml").read_text()
    command = re.search(r"^# Validate with:\s+(cgw .+)$", header, re.MULTILINE)
    assert command is not None
    argv = shlex.split(command.group(1))
    monkeypatch.chdir(REPO)  # the command is written for the project's top folder
    assert main(argv[1:]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config/examples/gateway.yaml: OK")
    assert "profile pm-laser-rs485" in out  # a shipped profile was found and merged


def test_the_example_with_its_production_secrets(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    cfg_path = tmp_path / "gateway.yaml"
    text, uncommented = SECRET_KEY.subn(r"\1\2", cfg_path.read_text())
    assert uncommented == 3  # cert_file, key_file, password_file
    cfg_path.write_text(text)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("gw-01.crt", "gw-01.key", "mqtt-password"):
        (secrets / name).write_text("x\n")
        (secrets / name).chmod(0o600)
    cfg = load_config(cfg_path)
    th = as_modbus(next(d for d in cfg.devices if d.id == "th-court"))
    points = {p.name: p for p in th.active_points}
    assert points["temperature"].table == "input"
    assert points["dew_point"].address == 2
    station = as_modbus(next(d for d in cfg.devices if d.id == "station-1"))
    assert "illuminance" not in {p.name for p in station.active_points}
    mqtt = cfg.upstream.mqtt
    assert mqtt.tls is not None
    assert mqtt.tls.ca_file == tmp_path / "tls" / "platform-ca.crt"
    assert mqtt.tls.key_file == secrets / "gw-01.key"
    assert mqtt.password_file == secrets / "mqtt-password"
