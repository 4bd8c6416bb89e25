"""HTTP push: its config and checks, and its auth and body rules."""

import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.http_push.body import BodyError, Secrets, authorised, document
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.loader import load_config
from gateway.core.errors import ConfigError

SECRET = "s3cret-" + "0123456789"


def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "push.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return str(path)


def entry(tmp_path: Path, **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kind": "http_push",
        "id": "meters",
        "auth": {"token_file": secret_file(tmp_path)},
        "readings": {"points": [{"name": "kwh", "path": "kwh"}]},
    }
    return {**doc, **over}


def config(tmp_path: Path, *devices: dict[str, Any], **sections: Any) -> Path:
    doc = {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "devices": list(devices),
        **sections,
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


def test_an_entry_is_its_broker_kinds_mapping_on_a_topic_of_its_own(tmp_path: Path) -> None:
    cfg = HttpPushDeviceConfig.model_validate(
        entry(
            tmp_path,
            readings={
                "device_from_path": True,
                "devices": ["m1", "m2"],
                "points": [{"name": "kwh", "path": "kwh"}],
            },
        )
    )
    json_cfg = cfg.as_json()
    assert (json_cfg.topic, json_cfg.device_from_topic) == ("push/meters/+", 2)
    assert cfg.device_ids == ["m1", "m2"]
    assert cfg.auth.header == "X-Auth-Token"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"door": {"doors": [{"id": "d1"}], "profile": "facegate-json"}},
         "give exactly one of readings, door or records"),
        ({"readings": None}, "give exactly one of readings, door or records"),
        ({"form_field": "data"}, "form_field needs body: form"),
        ({"auth": {}}, "give exactly one of token_file or hmac_file"),
        ({"readings": {"devices": ["a"], "points": [{"name": "kwh", "path": "kwh"}]}},
         "readings: devices lists ids a message names: set device_from_path or payload.device"),
    ],
)  # fmt: skip
def test_entries_that_cannot_work_are_refused_with_the_key(
    tmp_path: Path, over: dict[str, Any], message: str
) -> None:
    path = config(tmp_path, entry(tmp_path, **over), http_push={})
    assert any(e.endswith(message) for e in errors(path)), errors(path)


def test_an_entry_needs_the_listener_and_ids_of_its_own(tmp_path: Path) -> None:
    other = {"kind": "gpio", "id": "m2", "inputs": [{"name": "button", "pin": 17}]}
    fleet = entry(tmp_path, readings={"device_from_path": True, "devices": ["m1", "m2"],
                                      "points": [{"name": "kwh", "path": "kwh"}]})  # fmt: skip
    found = errors(config(tmp_path, fleet, other))
    assert any(
        "devices[0] (meters): an http_push device needs an 'http_push' section" in e for e in found
    )
    assert any("devices[0] (meters): device 'm2' is also devices[1]" in e for e in found), found


def test_the_push_listener_may_not_share_a_port(tmp_path: Path) -> None:
    path = config(tmp_path, entry(tmp_path), http_push={"port": 9100}, monitor={"port": 9100})
    assert any("http_push.port: 127.0.0.1:9100 is already taken by monitor" in e
               for e in errors(path))  # fmt: skip


def test_tokens_come_from_their_header_or_query_only(tmp_path: Path) -> None:
    cfg = HttpPushDeviceConfig.model_validate(entry(tmp_path))
    secrets = Secrets.of(cfg.auth)
    assert authorised(cfg.auth, secrets, {"X-Auth-Token": SECRET}, {}, b"")
    assert not authorised(cfg.auth, secrets, {"X-Auth-Token": SECRET + "x"}, {}, b"")
    assert not authorised(cfg.auth, secrets, {}, {"token": SECRET}, b"")
    query = HttpPushDeviceConfig.model_validate(
        entry(tmp_path, auth={"token_file": secret_file(tmp_path), "token_query": "key"})
    )
    assert authorised(query.auth, secrets, {}, {"key": SECRET}, b"")
    assert not authorised(query.auth, secrets, {"X-Auth-Token": SECRET}, {}, b"")
    assert "s3cret" not in repr(secrets)


def test_an_hmac_signs_the_exact_body(tmp_path: Path) -> None:
    cfg = HttpPushDeviceConfig.model_validate(
        entry(tmp_path, auth={"hmac_file": secret_file(tmp_path), "hmac_prefix": "sha256="})
    )
    secrets = Secrets.of(cfg.auth)
    body = b'{"kwh": 12.5}'
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert authorised(cfg.auth, secrets, {"X-Signature": f"sha256={digest}"}, {}, body)
    assert authorised(cfg.auth, secrets, {"X-Signature": f"sha256={digest.upper()}"}, {}, body)
    assert not authorised(cfg.auth, secrets, {"X-Signature": digest}, {}, body)  # no prefix
    assert not authorised(cfg.auth, secrets, {"X-Signature": f"sha256={digest}"}, {}, body + b" ")


def test_forms_become_documents(tmp_path: Path) -> None:
    plain = HttpPushDeviceConfig.model_validate(entry(tmp_path, body="form"))
    doc = json.loads(document(plain, b"kwh=12.5&count=7&sn=0012&id=A%201&x="))
    assert doc == {"kwh": 12.5, "count": 7, "sn": "0012", "id": "A 1", "x": ""}
    wrapped = HttpPushDeviceConfig.model_validate(entry(tmp_path, body="form", form_field="data"))
    assert document(wrapped, b"data=%7B%22kwh%22%3A1%7D&sign=x") == b'{"kwh":1}'
    for bad in (b"sign=x", b"data=\xff"):
        with pytest.raises(BodyError) as info:
            document(wrapped, bad)
        assert info.value.reason == "not_form"
    raw = HttpPushDeviceConfig.model_validate(entry(tmp_path))
    assert document(raw, b"{not json") == b"{not json"  # the mapping judges JSON bodies


def test_the_documented_entries_load(tmp_path: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "http-push.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", page, re.S)]
    listener, devices = blocks[0]["http_push"], blocks[1]["devices"]
    text = json.dumps(devices).replace("/etc/cgw/secrets/", f"{tmp_path}/")
    for name in ("gate-b.token", "stations.key"):
        (tmp_path / name).write_text(SECRET)
        (tmp_path / name).chmod(0o600)
    key = tmp_path / "privacy.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    cfg = load_config(config(tmp_path, *json.loads(text), http_push=listener,
                             privacy={"key_file": str(key)}))  # fmt: skip
    push = [d for d in cfg.devices if isinstance(d, HttpPushDeviceConfig)]
    assert [(d.id, d.device_ids) for d in push] == [("gate-b", ["FG-B1"]),
                                                     ("stations", ["es-01", "es-02"])]  # fmt: skip
    assert [t.id for t in cfg.terminals] == ["gate-b"]
