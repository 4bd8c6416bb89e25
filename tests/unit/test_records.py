"""Terminal records: the config's classes, the pure body mapping, and the seal stage."""

import contextlib
import json
import re
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers.http_push.records import Refused, parse
from gateway.config.loader import load_config
from gateway.config.records import RecordsConfig
from gateway.core.errors import ConfigError
from gateway.core.records import record_record
from gateway.pipeline.privacy import Pseudonymiser
from gateway.pipeline.sealing import Seal, open_sealed, record_aad

KINDS: dict[str, Any] = {
    "kinds": [
        {
            "id": "care_request",
            "urgent": "urgent",
            "retention": "30d",
            "fields": [
                {"name": "flat", "class": "internal", "required": True},
                {"name": "urgent", "class": "public", "type": "bool"},
                {"name": "resident", "class": "personal"},
                {"name": "id_number", "class": "sensitive", "max_length": 18},
                {"name": "age", "class": "sensitive", "type": "number"},
            ],
        }
    ]
}
ALLOWED = frozenset({"care_request"})


def records(tmp_path: Path, key: X25519PrivateKey | None = None) -> RecordsConfig:
    private = key or X25519PrivateKey.generate()
    pem = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "platform.pub").write_bytes(pem)
    return RecordsConfig.model_validate({**KINDS, "public_key_file": tmp_path / "platform.pub"})


def body(**fields: Any) -> bytes:
    return json.dumps({"kind": "care_request", "id": 7, "fields": fields}).encode()


def test_values_are_split_by_class_and_the_urgent_flag_is_read(tmp_path: Path) -> None:
    rec = parse(records(tmp_path), ALLOWED, "kiosk", body(flat="3-1201", urgent=True,
                resident="R-1", id_number="110101194003072315", age=86), 5.0)  # fmt: skip
    assert (rec.device, rec.kind, rec.record_id) == ("kiosk", "care_request", "7")
    assert (rec.ts, rec.urgent) == (5.0, True)
    assert rec.fields == (("flat", "3-1201"), ("urgent", True))
    assert dict(rec.private) == {"resident": "R-1", "id_number": "110101194003072315", "age": 86}
    assert "110101" not in repr(rec)
    assert rec.retention == 30 * 86400


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff", "not_json"),
        (b"[1]", "not_json"),
        (json.dumps({"kind": "other", "id": 1, "fields": {}}).encode(), "unknown_kind"),
        (json.dumps({"id": 1, "fields": {}}).encode(), "missing_field"),
        (json.dumps({"kind": "care_request", "fields": {}}).encode(), "missing_field"),
        (body(urgent=True), "missing_field"),  # flat is required
        (body(flat="1", religion="x"), "undeclared_field"),
        (body(flat="1", urgent="yes"), "wrong_type"),
        (body(flat="1", age=True), "wrong_type"),
        (body(flat="1", id_number="1" * 19), "wrong_type"),  # over its max_length
        (body(flat="1\x00"), "wrong_type"),
    ],
)
def test_bodies_that_cannot_be_a_record_are_refused_with_a_reason(
    tmp_path: Path, raw: bytes, reason: str
) -> None:
    with pytest.raises(Refused) as info:
        parse(records(tmp_path), ALLOWED, "kiosk", raw, 0.0)
    assert info.value.reason == reason
    assert "1" * 19 not in str(info.value)  # details name fields, never values


@given(st.binary(max_size=300))
def test_parse_raises_nothing_but_refused(raw: bytes) -> None:
    cfg = RecordsConfig.model_validate(
        {"kinds": [{"id": "k", "fields": [{"name": "a", "class": "public"}]}]}
    )
    with contextlib.suppress(Refused):
        parse(cfg, frozenset({"k"}), "kiosk", raw, 0.0)


def test_the_seal_stage_hides_personal_and_sensitive_values(tmp_path: Path) -> None:
    platform = X25519PrivateKey.generate()
    cfg = records(tmp_path, platform)
    names = Pseudonymiser("s1", secrets.token_bytes(32))
    rec = parse(cfg, ALLOWED, "kiosk", body(flat="3-1201", resident="R-1",
                id_number="110101194003072315"), 5.0)  # fmt: skip
    with pytest.raises(ValueError, match="before the seal stage"):
        record_record(rec, True)
    from gateway.config.sealing_key import load_public_key

    sealed = Seal("s1", "gw1", load_public_key(tmp_path / "platform.pub"), names)(rec)
    out = record_record(sealed, True)  # type: ignore[arg-type]
    fields = out.fields
    assert fields["persons"] == {"resident": names.pseudonym("R-1")}
    assert "110101194003072315" not in json.dumps(fields)
    aad = record_aad("s1", "gw1", "kiosk", "care_request", "7")
    envelope = fields["sealed"]
    assert isinstance(envelope, dict)
    assert json.loads(open_sealed(platform, envelope, aad)) == {"id_number": "110101194003072315"}
    with pytest.raises(ValueError, match="another key"):
        open_sealed(X25519PrivateKey.generate(), envelope, aad)
    tampered = {**envelope, "ct": envelope["ct"][:-4] + "AAAA"}
    with pytest.raises(ValueError, match="does not open"):
        open_sealed(platform, tampered, aad)
    assert out.expires == 5.0 + 30 * 86400  # purged after its retention, delivered or not


def test_kinds_that_cannot_work_are_refused(tmp_path: Path) -> None:
    bad_urgent = {
        "kinds": [{"id": "k", "urgent": "a", "fields": [{"name": "a", "class": "public"}]}]
    }
    with pytest.raises(ValidationError, match="must be a bool field"):
        RecordsConfig.model_validate(bad_urgent)
    with pytest.raises(ValidationError, match="sensitive fields need the platform's public key"):
        RecordsConfig.model_validate(KINDS)
    (tmp_path / "rsa.pub").write_text("not a key")
    with pytest.raises(ValidationError, match="neither a PEM X25519 public key nor 32 bytes"):
        RecordsConfig.model_validate({**KINDS, "public_key_file": tmp_path / "rsa.pub"})


def test_a_record_terminal_needs_declared_kinds_and_a_privacy_key(tmp_path: Path) -> None:
    records(tmp_path)
    token = tmp_path / "kiosk.token"
    token.write_text("kiosk-token-0123456789")
    token.chmod(0o600)
    doc = {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "http_push": {},
        "records": {**KINDS, "public_key_file": str(tmp_path / "platform.pub")},
        "devices": [
            {
                "kind": "http_push",
                "id": "kiosk",
                "auth": {"token_file": str(token)},
                "records": ["care_request", "complaint"],
            }
        ],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == [
        "devices[0] (kiosk).records: no record kind 'complaint' (kinds: care_request)",
        "records: personal fields need a 'privacy' section (the key that pseudonymises them)",
    ]


def test_the_documented_key_pair_and_config_work(tmp_path: Path) -> None:
    page = (Path(__file__).parents[2] / "docs" / "records.md").read_text()
    shell = re.search(r"```sh\n(.*?)```", page, re.S)
    assert shell is not None
    for line in shell.group(1).splitlines():  # openssl genpkey ..., openssl pkey ... -pubout
        subprocess.run(shlex.split(line), cwd=tmp_path, check=True, capture_output=True)
    doc = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", page, re.S)[0])
    doc["records"]["public_key_file"] = str(tmp_path / "platform-records.pub")
    token = tmp_path / "kiosk.token"
    token.write_text("kiosk-token-0123456789")
    token.chmod(0o600)
    doc["devices"][0]["auth"]["token_file"] = str(token)
    key = tmp_path / "privacy.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    doc |= {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "http_push": {},
        "privacy": {"key_file": str(key)},
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(doc))
    cfg = load_config(path)
    assert cfg.records is not None
    assert [k.id for k in cfg.records.kinds] == ["care_request", "resident_update"]
    private = serialization.load_pem_private_key((tmp_path / "records.key").read_bytes(), None)
    assert isinstance(private, X25519PrivateKey)
    from gateway.config.sealing_key import load_public_key
    from gateway.pipeline.sealing import seal

    envelope = seal(load_public_key(tmp_path / "platform-records.pub"), b"{}", b"aad")
    assert open_sealed(private, envelope, b"aad") == b"{}"  # the platform's key opens it
