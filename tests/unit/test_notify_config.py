"""``ChannelConfig`` refuses a readable secret file, a missing one and unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config.notify import ChannelConfig

SECRET_URL = "wecombot://secret-key-never-echoed"


def _url_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "guard.urls"
    path.write_text(SECRET_URL + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def _errors(**fields: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        ChannelConfig.model_validate(fields)
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in info.value.errors()]


def test_defaults(tmp_path: Path) -> None:
    config = ChannelConfig(id="guard", url_file=_url_file(tmp_path))
    assert (config.rate, config.retries, config.timeout) == (20.0, 3, 10.0)
    assert config.verify_errcode is True
    assert config.title_prefix == ""


def test_url_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _url_file(tmp_path, mode=0o644)
    (error,) = _errors(id="guard", url_file=str(path))
    assert error.startswith("url_file: ")
    assert "readable by group or others (mode 644)" in error
    assert f"chmod 600 {path}" in error
    assert SECRET_URL not in error


def test_url_file_readable_by_group_is_refused(tmp_path: Path) -> None:
    (error,) = _errors(id="guard", url_file=str(_url_file(tmp_path, mode=0o640)))
    assert "mode 640" in error


def test_missing_url_file_is_refused(tmp_path: Path) -> None:
    (error,) = _errors(id="guard", url_file=str(tmp_path / "nowhere.urls"))
    assert error.startswith("url_file: ")
    assert "does not point to a file" in error


def test_url_file_is_required(tmp_path: Path) -> None:
    assert _errors(id="guard") == ["url_file: Field required"]


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    errors = _errors(id="guard", url_file=str(_url_file(tmp_path)), url=SECRET_URL, retry=2)
    assert sorted(errors) == [
        "retry: Extra inputs are not permitted",
        "url: Extra inputs are not permitted",
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "guard room"),
        ("rate", 0),
        ("rate", 601),
        ("retries", -1),
        ("retries", 11),
        ("timeout", 0),
        ("title_prefix", "x" * 65),
    ],
)
def test_out_of_range_values_are_refused(tmp_path: Path, field: str, value: object) -> None:
    fields: dict[str, object] = {"id": "guard", "url_file": str(_url_file(tmp_path))}
    fields[field] = value
    (error,) = _errors(**fields)
    assert error.startswith(f"{field}: ")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = ChannelConfig(id="guard", url_file=_url_file(tmp_path))
    with pytest.raises(ValidationError):
        config.retries = 5  # type: ignore[misc]
