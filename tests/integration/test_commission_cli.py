"""``cgw scan``, ``cgw read`` and ``cgw devices`` refusing what they cannot do, with the exit code
and the one line that says why (the commands at work: tests/e2e/test_commission.py)."""

import json
from pathlib import Path

import pytest

from gateway.cli.main import main
from tests.support.ports import free_port
from tests.support.sensors import as_configured


def config(tmp_path: Path, api: bool = False) -> Path:
    """The crossed pair on a TCP bus where nothing listens; with ``api``, an API section
    whose port nothing listens on either (the gateway is not running)."""
    doc = as_configured(
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": str(tmp_path / "b.db")},
            "upstream": {"mqtt": {"host": "127.0.0.1"}},
            "buses": [{"kind": "modbus_tcp", "id": "tcp-1", "host": "127.0.0.1", "port": 1}],
        },
        "tcp-1",
    )
    if api:
        token = tmp_path / "api.token"
        token.write_text("f" * 32)
        token.chmod(0o600)
        doc["api"] = {"port": free_port(), "token_file": str(token)}
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps(doc))
    return path


def test_unknown_names_and_bad_unit_ids_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config(tmp_path))
    assert main(["scan", "rs485-9", "-c", cfg]) == 2
    assert "no bus 'rs485-9' is configured" in capsys.readouterr().err
    assert main(["read", "ghost", "-c", cfg]) == 2
    assert "no device 'ghost' is configured" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["scan", "tcp-1", "--units", "0-300", "-c", cfg])
    assert exited.value.code == 2
    assert "unit ids run from 1 to 247" in capsys.readouterr().err
    assert main(["devices", "-c", cfg]) == 2  # live state needs the API
    assert "has no 'api' section" in capsys.readouterr().err


def test_standalone_says_so_once_and_a_bus_that_will_not_open_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(config(tmp_path, api=True))
    assert main(["read", "th-1", "-c", cfg]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("standalone: the gateway's local API does not answer at 127.0.0.1:")
    assert err[0].endswith("; opening the bus of th-1 myself")
    assert err[1:] == ["cannot connect to bus tcp-1 (127.0.0.1:1)"]
    assert main(["devices", "-c", cfg]) == 1
    assert capsys.readouterr().err.startswith("the gateway is not running: ")
