"""The console's config: loopback first; the LAN only over TLS with a private key."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config.console import ConsoleConfig


def pair(tmp_path: Path, key_mode: int = 0o600) -> dict[str, str]:
    cert, key = tmp_path / "console.crt", tmp_path / "console.key"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(key_mode)
    return {"tls_cert": str(cert), "tls_key": str(key)}


def test_loopback_by_default_and_its_url() -> None:
    cfg = ConsoleConfig.model_validate({})
    assert (cfg.host, cfg.port, cfg.tls) == ("127.0.0.1", 8088, False)
    assert cfg.url == "http://127.0.0.1:8088"


def test_a_lan_address_needs_allow_remote_and_then_tls(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not a loopback address"):
        ConsoleConfig.model_validate({"host": "192.168.10.2"})
    with pytest.raises(ValidationError, match="must not cross the LAN in clear"):
        ConsoleConfig.model_validate({"host": "192.168.10.2", "allow_remote": True})
    cfg = ConsoleConfig.model_validate(
        {"host": "192.168.10.2", "allow_remote": True, **pair(tmp_path)}
    )
    assert cfg.url == "https://192.168.10.2:8088"


def test_a_key_readable_by_others_and_a_lone_certificate_are_refused(tmp_path: Path) -> None:
    files = pair(tmp_path, key_mode=0o644)
    with pytest.raises(ValidationError, match="tls_key"):
        ConsoleConfig.model_validate(files)
    with pytest.raises(ValidationError, match="tls_cert and tls_key go together"):
        ConsoleConfig.model_validate({"tls_cert": files["tls_cert"]})
