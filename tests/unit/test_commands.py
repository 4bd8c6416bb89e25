"""Signed commands as JWS: the rejection corpus, the strict protected header, key rotation, the
documented worked example, the platform example in the docs signed with a second JOSE library,
a fuzz test of ``Verifier.verify`` and the ``cgw keygen`` / ``cgw sign`` round trip.

The legacy JSON envelope of the transition has its own tests (test_commands_legacy.py)."""

import argparse
import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import stat
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli import keys as cli_commands
from gateway.commands.model import (
    NAME_PATTERN,
    NAMES,
    TYP,
    AlarmArgs,
    Command,
    NoArgs,
    UnlockArgs,
    result_topic,
)
from gateway.commands.rejected import REASONS, Rejected
from gateway.commands.signing import (
    b64url,
    b64url_decode,
    keygen,
    load_private_key,
    make_command,
    sign,
)
from gateway.commands.verify import Verifier
from gateway.config.keys import key_id, load_public_key, load_public_keys
from gateway.core.errors import ConfigError

NOW = 1_800_000_000.0
SITE, GW = "huayuan-b7", "gw-01"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NEW_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
STRANGER = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
KID = key_id(KEY.public_key())
HEADER = {"alg": "EdDSA", "kid": KID, "typ": TYP}
DEFAULT_ARGS: dict[str, dict[str, Any]] = {
    "ack": {"alarm_id": "a1", "by": "guard-wang"},
    "reset": {"alarm_id": "a1", "by": "guard-wang"},
    "unlock": {"door": "gate-1", "seconds": 5},
    "silence": {},
    "status": {},
    "away": {"household": "b7-0304", "start": 1, "end": 2, "note": "away", "by": "office"},
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "commands.md"


def keys(*private: Ed25519PrivateKey) -> dict[str, Ed25519PublicKey]:
    return {key_id(k.public_key()): k.public_key() for k in private}


def verifier(*private: Ed25519PrivateKey, **kw: Any) -> Verifier:
    return Verifier(keys(*(private or (KEY,))), SITE, GW, **kw)


def unsigned(name: str = "unlock", args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    """A command for this gateway issued at NOW, valid 60 s; ``kw`` overrides members."""
    if args is None:
        args = DEFAULT_ARGS[name]
    cmd = make_command(
        name, args, site_id=SITE, gateway_id=GW, now=NOW, command_id="cmd-1", nonce="n" * 22
    )
    cmd.update(kw)
    return cmd


def signed(key: Ed25519PrivateKey = KEY, **kw: Any) -> bytes:
    """``unsigned(**kw)`` signed by ``key``, as it goes on the wire."""
    return sign(key, unsigned(**kw)).encode()


def encode(part: Any) -> str:
    """A JWS segment: bytes as they are, anything else as compact JSON first."""
    if not isinstance(part, bytes):
        part = json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode()
    return b64url(part)


def token(header: Any = HEADER, payload: Any = None, key: Ed25519PrivateKey = KEY) -> bytes:
    """A compact JWS of any header and payload, signed by ``key`` (no JOSE library involved,
    so it can carry what a library would refuse to write)."""
    signing_input = f"{encode(header)}.{encode(unsigned() if payload is None else payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}".encode()


def segments(raw: bytes) -> list[str]:
    return raw.decode().split(".")


def payload_of(raw: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(b64url_decode(segments(raw)[1]))
    return result


def with_payload(raw: bytes, payload: Any) -> bytes:
    """``raw`` with its payload replaced and its signature kept: a tampered command."""
    head, _, sig = segments(raw)
    return f"{head}.{encode(payload)}.{sig}".encode()


def rejected(raw: bytes, reason: str, v: Verifier | None = None, now: float = NOW) -> Rejected:
    with pytest.raises(Rejected) as info:
        (v or verifier()).verify(raw, now)
    assert info.value.reason == reason, info.value
    return info.value


# -- the valid command ----------------------------------------------------------------------------


def test_valid_command_is_accepted() -> None:
    cmd = verifier().verify(signed(), NOW)
    assert cmd == Command(
        id="cmd-1",
        name="unlock",
        site_id=SITE,
        gateway_id=GW,
        args=UnlockArgs(door="gate-1", seconds=5),
        iat=int(NOW),
        exp=int(NOW) + 60,
        nonce="n" * 22,
        kid=KID,
        form="jws",
    )
    assert cmd.arguments() == {"door": "gate-1", "seconds": 5}


def test_the_wire_form_is_header_payload_signature_as_signed() -> None:
    raw = signed()
    head, body, sig = segments(raw)
    assert json.loads(b64url_decode(head)) == HEADER
    assert payload_of(raw) == unsigned()
    KEY.public_key().verify(b64url_decode(sig), f"{head}.{body}".encode())  # raises if not


@pytest.mark.parametrize(
    ("name", "args", "model"),
    [
        ("ack", {"alarm_id": "4be1c0d2a9f04e11", "by": "guard-wang"}, AlarmArgs),
        ("reset", {"alarm_id": "4be1c0d2a9f04e11", "by": "值班 王伟"}, AlarmArgs),
        ("unlock", {"door": "gate-1", "seconds": 300}, UnlockArgs),
        ("silence", {}, NoArgs),
        ("status", {}, NoArgs),
    ],
)
def test_every_command_name_is_accepted(name: str, args: dict[str, Any], model: type) -> None:
    cmd = verifier().verify(signed(name=name, args=args), NOW, topic_name=name)
    assert cmd.name == name
    assert isinstance(cmd.args, model)
    assert cmd.arguments() == args


def test_the_payload_is_verified_as_sent_whatever_its_formatting() -> None:
    # what the platform's JSON writer produces is what is signed: no canonical form
    cmd = unsigned(name="ack", args={"alarm_id": "a1", "by": "值班 王伟"})
    pretty = json.dumps(dict(reversed(cmd.items())), indent=3, ensure_ascii=True).encode()
    assert b"\\u503c" in pretty
    verified = verifier().verify(token(payload=pretty), NOW)
    assert verified.arguments() == cmd["args"]


@pytest.mark.parametrize(
    "typ", [TYP, TYP.upper(), f"application/{TYP}", f"Application/{TYP.upper()}"]
)
def test_typ_is_a_media_type_compared_without_case(typ: str) -> None:
    assert verifier().verify(token({**HEADER, "typ": typ}), NOW).id == "cmd-1"


def test_surrounding_whitespace_is_ignored() -> None:
    assert verifier().verify(b"\n " + signed() + b"\r\n", NOW).id == "cmd-1"


def test_validity_window_boundaries_are_inclusive() -> None:
    v = verifier(max_skew=30, max_lifetime=60)
    raw = signed()
    assert v.verify(raw, NOW + 60 + 30).id == "cmd-1"  # exactly exp + skew
    assert v.verify(raw, NOW - 30).id == "cmd-1"  # exactly iat - skew
    rejected(raw, "expired", v, now=NOW + 60 + 30.001)
    rejected(raw, "not_yet_valid", v, now=NOW - 30.001)


# -- the protected header -----------------------------------------------------------------------


def _hs256(header: dict[str, Any], secret: bytes) -> bytes:
    signing_input = f"{encode(header)}.{encode(unsigned())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}".encode()


def test_alg_none_is_refused() -> None:
    head = encode({"alg": "none", "kid": KID, "typ": TYP})
    err = rejected(f"{head}.{encode(unsigned())}.".encode(), "malformed")
    assert "only EdDSA" in err.detail
    assert err.command_id == "cmd-1"


def test_hmac_with_the_public_key_as_secret_is_refused() -> None:
    # the classic algorithm confusion: HS256 "signed" with the public key's bytes
    raw_public = KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (raw_public, pem):
        rejected(_hs256({**HEADER, "alg": "HS256"}, secret), "malformed")


@pytest.mark.parametrize(
    "alg",
    ["RS256", "ES256", "HS256", "eddsa", "EDDSA", "Ed25519", " EdDSA", "", None, 1, ["EdDSA"]],
)
def test_any_alg_but_eddsa_is_refused(alg: Any) -> None:
    rejected(token({**HEADER, "alg": alg}), "malformed")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("crit", ["exp"]),
        ("crit", []),
        ("jwk", {"kty": "OKP", "crv": "Ed25519", "x": b64url(bytes(32))}),
        ("jku", "https://attacker.example/keys.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIB"]),
        ("x5t", "abc"),
        ("b64", False),
        ("cty", "json"),
        ("exp", 1),
    ],
)
def test_header_parameters_beyond_alg_kid_typ_are_refused(member: str, value: Any) -> None:
    err = rejected(token({**HEADER, member: value}), "malformed")
    assert member in err.detail


def test_an_embedded_key_never_chooses_the_key() -> None:
    # a stranger signs and ships its own public key in the header
    public = STRANGER.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(public)}
    rejected(token({"alg": "EdDSA", "typ": TYP, "jwk": jwk}, key=STRANGER), "malformed")
    rejected(token({**HEADER, "kid": key_id(STRANGER.public_key())}, key=STRANGER), "unknown_key")


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "cgw-cmd", "application/jwt", 7])
def test_a_token_for_another_purpose_is_refused(typ: Any) -> None:
    header = {k: v for k, v in HEADER.items() if k != "typ"}
    if typ is not None:
        header["typ"] = typ
    rejected(token(header), "malformed")


@pytest.mark.parametrize("kid", [None, "", 7, "a/b", "x" * 65])
def test_a_missing_or_malformed_kid_is_refused(kid: Any) -> None:
    header = {k: v for k, v in HEADER.items() if k != "kid"}
    if kid is not None:
        header["kid"] = kid
    rejected(token(header), "malformed")


def test_a_header_that_is_not_a_json_object_is_refused() -> None:
    body = encode(unsigned())
    rejected(f"{b64url(b'{')}.{body}.x".encode(), "not_json")
    rejected(f"{b64url(b'[]')}.{body}.x".encode(), "malformed")
    rejected(f"{b64url(bytes([0xFF]))}.{body}.x".encode(), "not_utf8")
    duplicated = b'{"alg":"EdDSA","kid":"%s","typ":"%s","alg":"none"}' % (
        KID.encode(),
        TYP.encode(),
    )
    err = rejected(token(duplicated), "malformed")
    assert "duplicate" in err.detail


# -- the compact form -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t.replace(".", "", 1), id="two-parts"),
        pytest.param(lambda t: t + ".x", id="four-parts"),
        pytest.param(lambda t: t.replace(".", "=.", 1), id="padded-header"),
        pytest.param(lambda t: t.replace(".", " .", 1), id="space-inside"),
        pytest.param(lambda t: t.replace("eyJ", "eyJ+", 1), id="standard-alphabet"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "...", id="dots"),
        pytest.param(lambda t: "值." + t, id="non-ascii"),
    ],
)
def test_what_is_not_a_compact_jws_is_refused(mangle: Callable[[str], str]) -> None:
    rejected(mangle(signed().decode()).encode(), "malformed")


def test_a_payload_in_non_canonical_base64url_is_refused() -> None:
    text = json.dumps(unsigned())
    text += " " * (1 - len(text) % 3)  # so the last character of its base64url has unused bits
    head, body, sig = segments(token(payload=text.encode()))
    assert len(body) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = body[:-1] + alphabet[alphabet.index(body[-1]) + 1]  # same bytes when decoded leniently
    rejected(f"{head}.{twin}.{sig}".encode(), "malformed")


# -- forged and tampered ------------------------------------------------------------------------


def test_signature_over_different_content_is_rejected() -> None:
    other = segments(signed(args={"door": "gate-2", "seconds": 5}))[2]
    head, body, _ = segments(signed())
    err = rejected(f"{head}.{body}.{other}".encode(), "bad_signature")
    assert err.command_id == "cmd-1"
    assert not err.authenticated
    assert err.form == "jws"


def test_signature_by_an_unknown_key_is_rejected() -> None:
    rejected(signed(STRANGER), "unknown_key")


def test_unknown_key_claiming_a_known_key_id_is_rejected() -> None:
    rejected(token(HEADER, key=STRANGER), "bad_signature")


SIGNATURE_MANGLES = [
    pytest.param(lambda s: s[:-2], id="truncated"),
    pytest.param(lambda s: s[:43], id="half"),
    pytest.param(lambda s: "", id="empty"),
    pytest.param(lambda s: s + "==", id="padded"),
    pytest.param(lambda s: "!" * 86, id="not-base64"),
    pytest.param(lambda s: s[:40] + "+/" + s[42:], id="standard-alphabet"),
    pytest.param(lambda s: s[:85] + ("B" if s[85] == "A" else "A"), id="non-canonical-tail"),
    pytest.param(lambda s: b64url(b"\0" * 64), id="zero"),
    pytest.param(lambda s: s[:10] + ("x" if s[10] != "x" else "y") + s[11:], id="one-char"),
    pytest.param(lambda s: s + "AAAA", id="longer"),
]


@pytest.mark.parametrize("mangle", SIGNATURE_MANGLES)
def test_broken_signatures_are_rejected(mangle: Callable[[str], str]) -> None:
    head, body, sig = segments(signed())
    rejected(f"{head}.{body}.{mangle(sig)}".encode(), "bad_signature")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("args", {"door": "gate-1", "seconds": 300}),
        ("args", {"door": "gate-2", "seconds": 5}),
        ("target", {"site_id": SITE, "gateway_id": "gw-02"}),
        ("exp", int(NOW) + 30),
        ("iat", int(NOW) - 10),
        ("nonce", "m" * 22),
        ("id", "cmd-2"),
        ("name", "status"),
    ],
)
def test_any_change_after_signing_is_rejected(member: str, value: Any) -> None:
    raw = signed()
    cmd = payload_of(raw)
    cmd[member] = value
    if member == "name":
        cmd["args"] = {}
    rejected(with_payload(raw, cmd), "bad_signature")


def test_the_same_content_written_differently_is_not_the_signed_bytes() -> None:
    raw = signed()
    pretty = json.dumps(payload_of(raw), indent=1).encode()
    rejected(with_payload(raw, pretty), "bad_signature")


def test_a_signature_cannot_move_to_another_configured_key_id() -> None:
    _, body, sig = segments(signed(KEY))
    moved = encode({**HEADER, "kid": key_id(NEW_KEY.public_key())})
    rejected(f"{moved}.{body}.{sig}".encode(), "bad_signature", verifier(KEY, NEW_KEY))


# -- target, time -----------------------------------------------------------------------------


def test_wrong_site_is_rejected_after_the_signature() -> None:
    err = rejected(signed(target={"site_id": "other-site", "gateway_id": GW}), "wrong_target")
    assert err.authenticated
    assert err.command_id == "cmd-1"


def test_wrong_gateway_is_rejected() -> None:
    rejected(signed(target={"site_id": SITE, "gateway_id": "gw-02"}), "wrong_target")


def test_command_on_another_commands_topic_is_rejected() -> None:
    with pytest.raises(Rejected) as info:
        verifier().verify(signed(), NOW, topic_name="status")
    assert info.value.reason == "wrong_target"


def test_a_clock_reading_nan_accepts_nothing() -> None:
    rejected(signed(), "expired", now=float("nan"))


def test_expired_command_is_rejected() -> None:
    # queued at the broker while the gateway was offline for two hours
    err = rejected(signed(), "expired", now=NOW + 2 * 3600)
    assert err.authenticated


def test_future_dated_command_beyond_skew_is_rejected() -> None:
    rejected(signed(iat=int(NOW) + 61, exp=int(NOW) + 100), "not_yet_valid")


def test_lifetime_too_long_is_rejected() -> None:
    rejected(signed(exp=int(NOW) + 61), "lifetime_too_long")
    rejected(signed(exp=int(NOW) + 600), "lifetime_too_long", verifier(max_lifetime=300))
    assert verifier(max_lifetime=600).verify(signed(exp=int(NOW) + 600), NOW).exp


# -- names and arguments ------------------------------------------------------------------------


def test_unknown_name_is_rejected() -> None:
    err = rejected(sign(KEY, {**unsigned(), "name": "open_all_doors"}).encode(), "unknown_name")
    assert err.command_id == "cmd-1"


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("unlock", {"door": "gate-1"}),  # missing
        ("unlock", {"door": "gate-1", "seconds": 5, "force": True}),  # extra
        ("unlock", {"door": "gate-1", "seconds": "5"}),  # string for an int
        ("unlock", {"door": "gate-1", "seconds": 5.0}),  # float
        ("unlock", {"door": "gate-1", "seconds": 5.5}),
        ("unlock", {"door": "gate-1", "seconds": 1e1}),
        ("unlock", {"door": "gate-1", "seconds": True}),  # bool is not an int
        ("unlock", {"door": "gate-1", "seconds": 0}),
        ("unlock", {"door": "gate-1", "seconds": 301}),
        ("unlock", {"door": "gate-1", "seconds": None}),
        ("unlock", {"door": "gate/1", "seconds": 5}),
        ("unlock", {"door": "", "seconds": 5}),
        ("unlock", {"door": ["gate-1"], "seconds": 5}),
        ("ack", {"alarm_id": "a1"}),
        ("ack", {"alarm_id": "a1", "by": ""}),
        ("ack", {"alarm_id": "a1", "by": "   "}),
        ("ack", {"alarm_id": "a1", "by": "x" * 65}),
        ("ack", {"alarm_id": "a1", "by": "line\nbreak"}),
        ("reset", {"alarm_id": 12, "by": "guard"}),
        ("silence", {"all": True}),
        ("status", {"verbose": 1}),
        (
            "away",
            {
                "household": "b7-0304",
                "start": 1.8e9,
                "end": 1800086400,
                "note": "x",
                "by": "office",
            },
        ),  # a float is never a time stamp here
        (
            "away",
            {
                "household": "b7-0304",
                "start": 1800000000,
                "end": 1800086400,
                "note": "",
                "by": "office",
            },
        ),
        ("away", {"household": "b7-0304", "start": 1800000000, "end": 1800086400, "note": "x"}),
    ],
)
def test_bad_args_are_rejected(name: str, args: dict[str, Any]) -> None:
    err = rejected(sign(KEY, {**unsigned(name), "args": args}).encode(), "bad_args")
    assert err.command_id == "cmd-1"
    assert not err.authenticated


def test_bad_args_are_found_before_the_signature() -> None:
    raw = signed()
    rejected(with_payload(raw, {**payload_of(raw), "args": {"door": 1, "seconds": 5}}), "bad_args")


def test_lone_surrogate_in_a_string_is_rejected() -> None:
    cmd = json.dumps(unsigned(name="ack", args={"alarm_id": "a1", "by": "guard"}))
    rejected(token(payload=cmd.replace('"guard"', '"gu\\ud800ard"').encode()), "bad_args")


# -- bytes, encoding, JSON, members ---------------------------------------------------------------


def test_oversized_command_is_rejected_before_anything_else() -> None:
    rejected(b"\xff" * 4097, "too_large")
    rejected(b" " * 4000 + signed(), "too_large")
    rejected(signed(), "too_large", verifier(max_size=100))


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b'{"v":\xc0\xaf}', b'{"by":"\xed\xa0\x80"}', b"\x80abc", b'{"a":"\xe5\x80"}'],
)
def test_non_utf8_is_rejected(raw: bytes) -> None:
    err = rejected(raw, "not_utf8")
    assert err.form is None
    rejected(token(payload=raw), "not_utf8")


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"}", b"{'v': 1}", b"NaN", b'{"v": Infinity}', b"[1,]", b"\xef\xbb\xbf{}", b"{}{}"],
)
def test_a_payload_that_is_not_json_is_rejected(payload: bytes) -> None:
    err = rejected(token(payload=payload), "not_json")
    assert err.command_id is None


@pytest.mark.parametrize("payload", [b"[]", b'"unlock"', b"1", b"null", b"true", b"[{}]"])
def test_json_that_is_not_an_object_is_rejected(payload: bytes) -> None:
    rejected(token(payload=payload), "malformed")


def test_duplicate_keys_are_rejected() -> None:
    text = json.dumps(unsigned())
    rejected(token(payload=(text[:-1] + ',"name":"silence"}').encode()), "malformed")
    nested = text.replace('"seconds": 5', '"seconds": 5, "seconds": 300')
    assert nested != text
    rejected(token(payload=nested.encode()), "malformed")


def test_deep_nesting_is_rejected() -> None:
    roomy = verifier(max_size=20_000)  # base64url makes a JWS 4/3 the size of its payload
    rejected(token(payload=b"[" * 2000 + b"]" * 2000), "malformed", roomy)
    rejected(token(payload=b'{"a":' * 600 + b"1" + b"}" * 600), "malformed", roomy)
    text = json.dumps(unsigned()).encode()
    deep = text.replace(b'"gate-1"', b"[" * 1500 + b"]" * 1500)
    rejected(token(payload=deep), "malformed", roomy)
    rejected(token(payload=text.replace(b'"gate-1"', b"[" * 50 + b"]" * 50)), "bad_args")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("v", 2),
        ("v", True),
        ("v", "1"),
        ("v", 1.0),
        ("id", ""),
        ("id", "a/b"),
        ("id", "+"),
        ("id", "x" * 65),
        ("id", 7),
        ("nonce", "short"),
        ("nonce", "n" * 65),
        ("nonce", "n" * 21 + "/"),
        ("name", 3),
        ("target", [SITE, GW]),
        ("target", {"site_id": SITE}),
        ("target", {"site_id": SITE, "gateway_id": GW, "x": 1}),
        ("target", {"site_id": SITE, "gateway_id": 1}),
        ("target", {"site_id": "a/b", "gateway_id": GW}),
        ("args", []),
        ("args", None),
        ("iat", 1_800_000_000.0),
        ("iat", "1800000000"),
        ("iat", -1),
        ("iat", 2**53),
        ("exp", True),
        ("exp", int(NOW)),  # not after iat
        ("exp", int(NOW) - 1),
        ("kid", KID),  # the key id goes in the header
        ("sig", "x"),  # the signature is the third segment
    ],
)
def test_malformed_command_is_rejected(member: str, value: Any) -> None:
    rejected(token(payload={**unsigned(), member: value}), "malformed")


@pytest.mark.parametrize("member", ["v", "id", "name", "target", "args", "iat", "exp", "nonce"])
def test_missing_member_is_rejected(member: str) -> None:
    cmd = unsigned()
    del cmd[member]
    rejected(token(payload=cmd), "malformed")


def test_unknown_member_is_rejected_even_if_signed() -> None:
    rejected(signed(operator="x"), "malformed")


def test_floats_are_never_accepted() -> None:
    text = json.dumps(unsigned()).encode()
    rejected(token(payload=text.replace(b'"iat": 1800000000', b'"iat": 1800000000.0')), "malformed")
    rejected(token(payload=text.replace(b'"iat": 1800000000', b'"iat": 18e8')), "malformed")


def test_rejected_reasons_are_the_documented_set() -> None:
    assert REASONS == (
        "too_large",
        "not_utf8",
        "not_json",
        "malformed",
        "unknown_name",
        "bad_args",
        "unknown_key",
        "bad_signature",
        "wrong_target",
        "expired",
        "not_yet_valid",
        "lifetime_too_long",
        "replayed",
    )
    assert str(Rejected("expired", "expired 5 s ago", "c1")) == "expired: expired 5 s ago"


def test_rejected_command_id_only_when_well_formed() -> None:
    assert rejected(token(payload={**unsigned(), "id": "a/b#c"}), "malformed").command_id is None
    cmd = unsigned()
    del cmd["v"]
    assert rejected(token(payload=cmd), "malformed").command_id == "cmd-1"


def test_the_legacy_envelope_is_refused_unless_enabled() -> None:
    envelope = json.dumps({**unsigned(), "kid": KID, "sig": "x" * 86}).encode()
    err = rejected(envelope, "malformed")
    assert "accept_legacy" in err.detail
    assert err.form == "legacy"


# -- key rotation -----------------------------------------------------------------------------


def test_key_rotation_accepts_old_and_new_during_the_changeover() -> None:
    before, during, after = verifier(KEY), verifier(KEY, NEW_KEY), verifier(NEW_KEY)
    old, new = signed(KEY), signed(NEW_KEY)
    assert before.verify(old, NOW).kid == KID
    rejected(new, "unknown_key", before)
    assert during.verify(old, NOW).kid == KID
    assert during.verify(new, NOW).kid == key_id(NEW_KEY.public_key())
    rejected(old, "unknown_key", after)
    assert after.verify(new, NOW).kid == key_id(NEW_KEY.public_key())
    assert during.key_ids == tuple(sorted(keys(KEY, NEW_KEY)))


def test_verifier_refuses_a_bad_configuration() -> None:
    with pytest.raises(ValueError, match="no platform public key"):
        Verifier({}, SITE, GW)
    with pytest.raises(ValueError, match="filed under"):
        Verifier({key_id(NEW_KEY.public_key()): KEY.public_key()}, SITE, GW)
    with pytest.raises(ValueError, match="site id"):
        Verifier(keys(KEY), "a/b", GW)
    with pytest.raises(ValueError, match="max_skew"):
        Verifier(keys(KEY), SITE, GW, max_skew=-1)


def test_key_id_is_sha256_of_the_raw_public_key() -> None:
    raw = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert hashlib.sha256(raw).hexdigest()[:16] == KID
    assert re.fullmatch(r"[0-9a-f]{16}", key_id(NEW_KEY.public_key()))


@pytest.mark.parametrize(
    ("text", "data"),
    [("", b""), ("AA", b"\0"), ("AAA", b"\0\0"), ("AAAA", b"\0\0\0"), ("-_8", b"\xfb\xff")],
)
def test_b64url_decode_reads_canonical_base64url(text: str, data: bytes) -> None:
    assert b64url_decode(text) == data
    assert b64url(data) == text


@pytest.mark.parametrize("text", ["A", "AB", "AA==", "A+8", "A/8", "AA A", "AA\n", "-_9"])
def test_b64url_decode_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="base64url"):
        b64url_decode(text)


# -- the documented worked example -----------------------------------------------------------------

EXAMPLE_PRIVATE_PEM = """\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJz5+iB0JY91nmaFKNU7iCmk6p5b6HShCgoIf0zmWE3l
-----END PRIVATE KEY-----
"""
EXAMPLE_PUBLIC_PEM = """\
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAI1ZvKPDpQVUmv4P+FlE6a7vJn9oQS7dN3wSDWxiL27U=
-----END PUBLIC KEY-----
"""
EXAMPLE_KID = "84fab1a6a2a69ca0"
EXAMPLE_HEADER = '{"alg":"EdDSA","kid":"84fab1a6a2a69ca0","typ":"cgw-cmd+jwt"}'
EXAMPLE_UNLOCK = (
    '{"v":1,"id":"0b6f3a52-4e1d-4c8e-9a57-2d1b7f6c9e31","name":"unlock",'
    '"target":{"site_id":"huayuan-b7","gateway_id":"gw-01"},'
    '"args":{"door":"gate-east","seconds":5},'
    '"iat":1800000000,"exp":1800000060,"nonce":"q2Vt8mX1bJ4fR7sN0pLw3A"}'
)
EXAMPLE_UNLOCK_JWS = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6Ijg0ZmFiMWE2YTJhNjljYTAiLCJ0eXAiOiJjZ3ctY21kK2p3dCJ9."
    "eyJ2IjoxLCJpZCI6IjBiNmYzYTUyLTRlMWQtNGM4ZS05YTU3LTJkMWI3ZjZjOWUzMSIsIm5hbWUiOiJ1bmxvY2si"
    "LCJ0YXJnZXQiOnsic2l0ZV9pZCI6Imh1YXl1YW4tYjciLCJnYXRld2F5X2lkIjoiZ3ctMDEifSwiYXJncyI6eyJk"
    "b29yIjoiZ2F0ZS1lYXN0Iiwic2Vjb25kcyI6NX0sImlhdCI6MTgwMDAwMDAwMCwiZXhwIjoxODAwMDAwMDYwLCJu"
    "b25jZSI6InEyVnQ4bVgxYko0ZlI3c04wcEx3M0EifQ."
    "nYC_K0lGEXxyqC-It2QgiG81FdQJedmbfCd6ODA1Dpc8iK11VA3rxJmmQpdoow6tOdiuQepzgS9qrEFmIiMJAA"
)


def _example_key() -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(EXAMPLE_PRIVATE_PEM.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _example_verifier() -> Verifier:
    public = serialization.load_pem_public_key(EXAMPLE_PUBLIC_PEM.encode())
    assert isinstance(public, Ed25519PublicKey)
    return Verifier({key_id(public): public}, "huayuan-b7", "gw-01")


def test_the_worked_example_signs_and_verifies() -> None:
    key = _example_key()
    assert key_id(key.public_key()) == EXAMPLE_KID
    assert sign(key, json.loads(EXAMPLE_UNLOCK)) == EXAMPLE_UNLOCK_JWS  # Ed25519: deterministic
    head, body, _ = EXAMPLE_UNLOCK_JWS.split(".")
    assert b64url_decode(head).decode() == EXAMPLE_HEADER
    assert b64url_decode(body).decode() == EXAMPLE_UNLOCK
    cmd = _example_verifier().verify(EXAMPLE_UNLOCK_JWS.encode(), NOW, topic_name="unlock")
    assert (cmd.kid, cmd.id, cmd.arguments()) == (EXAMPLE_KID, json.loads(EXAMPLE_UNLOCK)["id"],
                                                  {"door": "gate-east", "seconds": 5})  # fmt: skip


def test_the_worked_example_is_the_one_in_the_docs() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    for text in (EXAMPLE_PRIVATE_PEM, EXAMPLE_PUBLIC_PEM, EXAMPLE_KID, EXAMPLE_HEADER):
        assert text in doc, text
    assert EXAMPLE_UNLOCK in doc
    assert EXAMPLE_UNLOCK_JWS in doc.replace("\n", "")
    assert f"{len(EXAMPLE_UNLOCK.encode())} bytes" in doc


def _doc_block(heading: str, language: str) -> str:
    section = DOCS.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1].split("\n## ")[0]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_platform_example_in_the_docs_signs_what_the_gateway_accepts() -> None:
    """The docs sign with joserfc; the gateway verifies with PyJWT: two JOSE libraries agree."""
    snippet = _doc_block("Signing on the platform", "python")
    assert "from joserfc" in snippet
    assert "jwt" not in re.findall(r"^(?:from|import) (\w+)", snippet, re.MULTILINE)
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):  # the snippet sets filters
        exec(compile(snippet, f"{DOCS}:platform", "exec"), {"__name__": "__main__"})
    topic, fresh = out.getvalue().split()
    assert topic == "cgw/huayuan-b7/gw-01/cmd/status"
    cmd = _example_verifier().verify(fresh.encode(), time.time(), topic_name="status")
    assert (cmd.name, cmd.kid, cmd.form) == ("status", EXAMPLE_KID, "jws")
    assert EXAMPLE_UNLOCK_JWS in snippet.replace('"\n    "', "")


def test_the_illustrations_in_other_languages_use_the_same_header() -> None:
    for heading, lang in (("Signing on the platform", "js"), ("Signing on the platform", "java")):
        block = _doc_block(heading, lang)
        assert "EdDSA" in block
        assert TYP in block
        assert "kid" in block.lower()


# -- fuzz -----------------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = unsigned()
VALID_JWS = signed()
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["gate-1", SITE, GW, "unlock", "ack", "EdDSA", TYP, KID]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from([*VALID, *HEADER, "door", "seconds", "x", "crit", "jwk"]) | st.text(),
            inner,
        )
    ),
    max_leaves=12,
)


def _outcome(v: Verifier, raw: bytes) -> str:
    try:
        return v.verify(raw, NOW).name
    except Rejected as err:
        reason: str = err.reason
    assert reason in REASONS
    return reason


@FUZZ
@given(st.binary(max_size=5000))
def test_fuzz_bytes_only_ever_raise_rejected(raw: bytes) -> None:
    _outcome(verifier(), raw)
    _outcome(verifier(legacy=True), raw)


@FUZZ
@given(st.lists(st.text("eyJ0abc.-_=+/ \n", max_size=40), max_size=5))
def test_fuzz_dotted_text_only_ever_raises_rejected(parts: list[str]) -> None:
    assert _outcome(verifier(), ".".join(parts).encode()) in REASONS


@FUZZ
@given(json_values, json_values, st.booleans())
def test_fuzz_signed_json_only_ever_raises_rejected(head: Any, body: Any, ascii_only: bool) -> None:
    payload = json.dumps(body, ensure_ascii=ascii_only).encode()
    assert _outcome(verifier(), token(head, payload)) in REASONS
    assert _outcome(verifier(), token(HEADER, payload)) in REASONS


def _mutated(member: str, value: Any, delete: bool, in_header: bool) -> tuple[dict[str, Any], ...]:
    header, cmd = dict(HEADER), dict(VALID)
    target = header if in_header else cmd
    if delete:
        target.pop(member, None)
    else:
        target[member] = value
    return header, cmd


mutations = (
    st.sampled_from([*VALID, *HEADER, "extra"]),
    st.one_of(st.just(None), json_values),
    st.booleans(),
    st.booleans(),
)


@FUZZ
@given(*mutations)
def test_fuzz_commands_changed_after_signing_never_pass(
    member: str, value: Any, delete: bool, in_header: bool
) -> None:
    header, cmd = _mutated(member, value, delete, in_header)
    signature = segments(VALID_JWS)[2]
    raw = f"{encode(header)}.{encode(cmd)}.{signature}".encode()
    if _outcome(verifier(), raw) in NAMES:
        assert raw == VALID_JWS  # only the unchanged command passes


@FUZZ
@given(*mutations)
def test_fuzz_signed_commands_pass_only_as_what_they_say(
    member: str, value: Any, delete: bool, in_header: bool
) -> None:
    header, cmd = _mutated(member, value, delete, in_header)
    try:
        verified = verifier().verify(token(header, cmd), NOW)
    except Rejected:
        return  # its reason is one of REASONS: the other fuzz tests hold it to that
    assert set(cmd) == set(VALID)
    assert str(header["typ"]).lower().removeprefix("application/") == TYP
    assert {k: v for k, v in header.items() if k != "typ"} == {"alg": "EdDSA", "kid": KID}
    assert (verified.id, verified.name, verified.nonce) == (cmd["id"], cmd["name"], cmd["nonce"])
    assert (verified.site_id, verified.gateway_id) == (SITE, GW) == tuple(cmd["target"].values())
    assert (verified.iat, verified.exp, verified.arguments()) == (
        cmd["iat"],
        cmd["exp"],
        cmd["args"],
    )


@FUZZ
@given(st.integers(0, len(VALID_JWS) - 1), st.integers(0, 255))
def test_fuzz_byte_flips_never_pass(pos: int, byte: int) -> None:
    raw = bytearray(VALID_JWS)
    if raw[pos] == byte:
        return
    raw[pos] = byte
    with pytest.raises(Rejected):
        verifier().verify(bytes(raw), NOW)


@FUZZ
@given(
    name=st.sampled_from(NAMES),
    door=st.from_regex(NAME_PATTERN, fullmatch=True),
    seconds=st.integers(1, 300),
    by=st.text(min_size=1, max_size=64).filter(lambda s: s.isprintable() and s.strip() != ""),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)
def test_fuzz_any_valid_command_round_trips(
    name: str, door: str, seconds: int, by: str, ascii_only: bool, indent: int | None
) -> None:
    args: dict[str, Any] = {}
    if name in ("ack", "reset"):
        args = {"alarm_id": door, "by": by}
    elif name == "unlock":
        args = {"door": door, "seconds": seconds}
    elif name == "away":
        args = {"household": door, "start": seconds, "end": 2 * seconds, "note": by, "by": by}
    cmd = make_command(name, args, site_id=SITE, gateway_id=GW, now=NOW)
    for raw in (
        sign(KEY, cmd).encode(),
        token(payload=json.dumps(cmd, ensure_ascii=ascii_only, indent=indent).encode()),
    ):
        verified = verifier().verify(raw, NOW)
        assert verified.arguments() == args
        assert verified.id == cmd["id"]


# -- signing helpers and key files -------------------------------------------------------------


def test_make_command_refuses_what_the_gateway_would_reject() -> None:
    with pytest.raises(ValueError, match="unknown command"):
        make_command("reboot", {}, site_id=SITE, gateway_id=GW, now=NOW)
    with pytest.raises(ValueError, match="seconds"):
        make_command("unlock", {"door": "d", "seconds": 0}, site_id=SITE, gateway_id=GW, now=NOW)
    with pytest.raises(ValueError, match="gateway id"):
        make_command("status", {}, site_id=SITE, gateway_id="a/b", now=NOW)
    with pytest.raises(ValueError, match="command id"):
        make_command("status", {}, site_id=SITE, gateway_id=GW, now=NOW, command_id="a b")
    with pytest.raises(ValueError, match="nonce"):
        make_command("status", {}, site_id=SITE, gateway_id=GW, now=NOW, nonce="short")
    with pytest.raises(ValueError, match="ttl"):
        make_command("status", {}, site_id=SITE, gateway_id=GW, now=NOW, ttl=0)


def test_make_command_ids_and_nonces_are_fresh() -> None:
    a = make_command("status", {}, site_id=SITE, gateway_id=GW, now=NOW)
    b = make_command("status", {}, site_id=SITE, gateway_id=GW, now=NOW)
    assert a["id"] != b["id"]
    assert a["nonce"] != b["nonce"]
    assert len(a["nonce"]) == 22  # 128 bits, base64url


def test_sign_refuses_the_members_of_the_legacy_envelope() -> None:
    for member in ("kid", "sig"):
        with pytest.raises(ValueError, match="legacy envelope"):
            sign(KEY, {**unsigned(), member: "x"})
    with pytest.raises(ValueError, match="not JSON"):
        sign(KEY, {**unsigned(), "args": {"at": object()}})


def test_key_files_round_trip_and_bad_files_are_config_errors(tmp_path: Path) -> None:
    files = keygen(tmp_path / "keys", "platform")
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.public.stat().st_mode) == 0o644
    assert stat.S_IMODE(files.private.parent.stat().st_mode) == 0o700
    private = load_private_key(files.private)
    assert key_id(private.public_key()) == files.kid
    assert list(load_public_keys([files.public])) == [files.kid]
    with pytest.raises(FileExistsError):
        keygen(tmp_path / "keys", "platform")

    ec_pem = tmp_path / "ec.pub"
    ec_pem.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("not a key\n")
    with pytest.raises(ConfigError) as info:
        load_public_keys([files.public, files.public, ec_pem, garbage, tmp_path / "missing.pub"])
    assert len(info.value.errors) == 4
    assert "same key" in info.value.errors[0]
    assert "not an Ed25519 public key" in info.value.errors[1]
    with pytest.raises(ConfigError, match="no command public key"):
        load_public_keys([])
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_public_key(files.private)

    os.chmod(files.private, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_private_key(files.private)


# -- cgw keygen / cgw sign ----------------------------------------------------------------------


def cgw(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cgw")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_commands.add_parser(sub)
    return cli_commands.run(parser.parse_args(argv))


def test_cli_keygen_and_sign_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cgw("keygen", "--out", str(tmp_path / "keys")) == 0
    kid = capsys.readouterr().out.strip()
    private, public = tmp_path / "keys" / "platform.key", tmp_path / "keys" / "platform.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert cgw("keygen", "--out", str(tmp_path / "keys"), "--name", "next") == 0
    next_kid = capsys.readouterr().out.strip()

    code = cgw(
        "sign",
        "--key",
        str(private),
        "--site",
        SITE,
        "--gateway",
        GW,
        "--name",
        "unlock",
        "--arg",
        "door=gate-1",
        "--arg",
        "seconds=5",
        "--ttl",
        "30",
        "--id",
        "op-42",
        "--root",
        "acme/cgw",
    )
    assert code == 0
    topic, payload = capsys.readouterr().out.splitlines()
    assert topic == f"acme/cgw/{SITE}/{GW}/cmd/unlock"
    keyring = load_public_keys([public, tmp_path / "keys" / "next.pub"])
    assert set(keyring) == {kid, next_kid}
    assert json.loads(b64url_decode(payload.split(".")[0])) == {"alg": "EdDSA", "kid": kid,
                                                                "typ": TYP}  # fmt: skip
    cmd = Verifier(keyring, SITE, GW).verify(payload.encode(), payload_of(payload.encode())["iat"])
    assert (cmd.id, cmd.kid, cmd.exp - cmd.iat) == ("op-42", kid, 30)
    assert cmd.args == UnlockArgs(door="gate-1", seconds=5)
    assert result_topic("acme/cgw", SITE, GW, cmd.id) == f"acme/cgw/{SITE}/{GW}/cmd-result/op-42"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "unlock", "--arg", "door=gate-1"], "seconds"),
        (["--name", "unlock", "--arg", "door=gate-1", "--arg", "seconds=five"], "integer"),
        (["--name", "unlock", "--arg", "door=g", "--arg", "seconds=5", "--arg", "x=1"], "Extra"),
        (["--name", "status", "--arg", "novalue"], "KEY=VALUE"),
        (["--name", "status", "--ttl", "0"], "--ttl"),
        (["--name", "status", "--root", "cgw/#"], "--root"),
        (["--name", "status", "--id", "a/b"], "command id"),
        (["--name", "ack", "--arg", "alarm_id=a1", "--arg", "by=x", "--arg", "by=y"], "twice"),
    ],
)
def test_cli_sign_refuses_bad_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert cgw("keygen", "--out", str(tmp_path)) == 0
    capsys.readouterr()
    base = ["sign", "--key", str(tmp_path / "platform.key"), "--site", SITE, "--gateway", GW]
    assert cgw(*base, *extra) == 2
    out = capsys.readouterr()
    assert message in out.err
    assert out.out == ""


def test_cli_refuses_unusable_keys_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cgw("keygen", "--out", str(tmp_path)) == 0
    assert cgw("keygen", "--out", str(tmp_path)) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert cgw("keygen", "--out", str(tmp_path), "--name", "../evil") == 2
    base = ["--site", SITE, "--gateway", GW, "--name", "status"]
    assert cgw("sign", "--key", str(tmp_path / "missing.key"), *base) == 2
    assert cgw("sign", "--key", str(tmp_path / "platform.pub"), *base) == 2
    os.chmod(tmp_path / "platform.key", 0o644)
    assert cgw("sign", "--key", str(tmp_path / "platform.key"), *base) == 2
    assert "chmod 600" in capsys.readouterr().err
