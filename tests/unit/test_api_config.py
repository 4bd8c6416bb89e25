"""The local API's config: loopback unless remote access is asked for, a fit token file."""

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config.api import ApiConfig, is_loopback
from gateway.core.errors import ConfigError

TOKEN = "0123456789abcdef0123456789abcdef"


def _token_file(folder: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = folder / "api.token"
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def test_defaults_listen_on_loopback(tmp_path: Path) -> None:
    cfg = ApiConfig.model_validate({"token_file": str(_token_file(tmp_path))})
    assert (cfg.host, cfg.port, cfg.allow_remote) == ("127.0.0.1", 8181, False)
    assert cfg.read_token() == TOKEN


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost", "LOCALHOST"])
def test_loopback_hosts_are_accepted(tmp_path: Path, host: str) -> None:
    assert is_loopback(host)
    assert (
        ApiConfig.model_validate({"host": host, "token_file": _token_file(tmp_path)}).host == host
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "fe80::1", "gw.example"])
def test_non_loopback_listen_is_refused_without_allow_remote(tmp_path: Path, host: str) -> None:
    raw: dict[str, Any] = {"host": host, "token_file": _token_file(tmp_path)}
    with pytest.raises(ValidationError, match=r"not a loopback address.*allow_remote: true"):
        ApiConfig.model_validate(raw)
    assert ApiConfig.model_validate({**raw, "allow_remote": True}).host == host


def test_token_file_is_required() -> None:
    with pytest.raises(ValidationError, match="token_file"):
        ApiConfig.model_validate({})


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"tokn": "x"}, "tokn"),
        ({"token_file": "/nonexistent/api.token"}, "token_file"),
    ],
)
def test_bad_fields_are_refused(tmp_path: Path, raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ApiConfig.model_validate({"token_file": _token_file(tmp_path), **raw})


def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="chmod 600"):
        ApiConfig.model_validate({"token_file": _token_file(tmp_path, mode=0o644)})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "has 0 characters"),
        ("short\n", "has 5 characters; at least 16"),
        ("0123456789 abcdef0123", "printable ASCII without spaces"),
        ("0123456789abcdef密码", "printable ASCII without spaces"),
        (b"\xff" * 20, "not UTF-8"),
    ],
)
def test_unfit_tokens_are_refused_without_showing_them(
    tmp_path: Path, text: str | bytes, match: str
) -> None:
    path = _token_file(tmp_path)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValidationError, match=match) as info:
        ApiConfig.model_validate({"token_file": path})
    assert info.value.errors()[0]["loc"] == ("token_file",)
    if isinstance(text, str) and text.strip():
        assert text.strip() not in str(info.value)


def test_read_token_checks_the_file_again(tmp_path: Path) -> None:
    cfg = ApiConfig.model_validate({"token_file": _token_file(tmp_path)})
    cfg.token_file.write_text("short", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^api\.token_file: the token in .* has 5 characters"):
        cfg.read_token()
    cfg.token_file.unlink()
    with pytest.raises(ConfigError, match=r"^api\.token_file: cannot read .*No such file"):
        cfg.read_token()
