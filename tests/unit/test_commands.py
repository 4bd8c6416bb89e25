"""Signed commands: the rejection corpus, key rotation, the canonical form, the documented test
vectors, a fuzz test of ``Verifier.verify`` and the ``cgw keygen`` / ``cgw sign`` round trip."""

import argparse
import base64
import hashlib
import json
import os
import re
import stat
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
from gateway.commands import (
    REASONS,
    AlarmArgs,
    Command,
    NoArgs,
    Rejected,
    UnlockArgs,
    Verifier,
    canonical,
    key_id,
    load_public_keys,
    sign,
)
from gateway.commands.model import NAME_PATTERN, NAMES, result_topic
from gateway.commands.signing import (
    b64url,
    keygen,
    load_private_key,
    load_public_key,
    make_command,
)
from gateway.core.errors import ConfigError

NOW = 1_800_000_000.0
SITE, GW = "huayuan-b7", "gw-01"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
NEW_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
STRANGER = Ed25519PrivateKey.from_private_bytes(bytes(range(64, 96)))
DEFAULT_ARGS: dict[str, dict[str, Any]] = {
    "ack": {"alarm_id": "a1", "by": "guard-wang"},
    "reset": {"alarm_id": "a1", "by": "guard-wang"},
    "unlock": {"door": "gate-1", "seconds": 5},
    "silence": {},
    "status": {},
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


def signed(key: Ed25519PrivateKey = KEY, **kw: Any) -> dict[str, Any]:
    return sign(key, unsigned(**kw))


def wire(cmd: Any) -> bytes:
    return json.dumps(cmd).encode()


def rejected(raw: bytes, reason: str, v: Verifier | None = None, now: float = NOW) -> Rejected:
    with pytest.raises(Rejected) as info:
        (v or verifier()).verify(raw, now)
    assert info.value.reason == reason, info.value
    return info.value


# -- the valid command ----------------------------------------------------------------------------


def test_valid_command_is_accepted() -> None:
    cmd = verifier().verify(wire(signed()), NOW)
    assert cmd == Command(
        id="cmd-1",
        name="unlock",
        site_id=SITE,
        gateway_id=GW,
        args=UnlockArgs(door="gate-1", seconds=5),
        iat=int(NOW),
        exp=int(NOW) + 60,
        nonce="n" * 22,
        kid=key_id(KEY.public_key()),
    )
    assert cmd.arguments() == {"door": "gate-1", "seconds": 5}


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
    cmd = verifier().verify(wire(signed(name=name, args=args)), NOW, topic_name=name)
    assert cmd.name == name
    assert isinstance(cmd.args, model)
    assert cmd.arguments() == args


def test_wire_formatting_does_not_matter_only_content() -> None:
    cmd = signed(args={"door": "gate-1", "seconds": 5})
    pretty = json.dumps(dict(reversed(cmd.items())), indent=3, ensure_ascii=True).encode()
    assert verifier().verify(pretty, NOW).nonce == cmd["nonce"]


def test_validity_window_boundaries_are_inclusive() -> None:
    v = verifier(max_skew=30, max_lifetime=60)
    raw = wire(signed())
    assert v.verify(raw, NOW + 60 + 30).id == "cmd-1"  # exactly exp + skew
    assert v.verify(raw, NOW - 30).id == "cmd-1"  # exactly iat - skew
    rejected(raw, "expired", v, now=NOW + 60 + 30.001)
    rejected(raw, "not_yet_valid", v, now=NOW - 30.001)


# -- forged and tampered ------------------------------------------------------------------------


def test_signature_over_different_content_is_rejected() -> None:
    other = signed(args={"door": "gate-2", "seconds": 5})
    cmd = signed()
    cmd["sig"] = other["sig"]
    err = rejected(wire(cmd), "bad_signature")
    assert err.command_id == "cmd-1"
    assert not err.authenticated


def test_signature_by_an_unknown_key_is_rejected() -> None:
    rejected(wire(signed(STRANGER)), "unknown_key")


def test_unknown_key_claiming_a_known_key_id_is_rejected() -> None:
    cmd = sign(STRANGER, unsigned())
    cmd["kid"] = key_id(KEY.public_key())
    rejected(wire(cmd), "bad_signature")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:-2], id="truncated"),
        pytest.param(lambda s: s[:43], id="half"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: s + "==", id="padded"),
        pytest.param(lambda s: "!" * 86, id="not-base64"),
        pytest.param(lambda s: s[:40] + "+/" + s[42:], id="standard-alphabet"),
        pytest.param(lambda s: s[:85] + ("B" if s[85] == "A" else "A"), id="non-canonical-tail"),
        pytest.param(lambda s: b64url(b"\0" * 64), id="zero"),
        pytest.param(lambda s: s[:10] + ("x" if s[10] != "x" else "y") + s[11:], id="one-char"),
        pytest.param(lambda s: base64.b64encode(b"\1" * 64).decode(), id="base64-not-url"),
    ],
)
def test_broken_signatures_are_rejected(mangle: Callable[[str], str]) -> None:
    cmd = signed()
    cmd["sig"] = mangle(cmd["sig"])
    rejected(wire(cmd), "bad_signature")


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
    cmd = signed()
    cmd[member] = value
    if member == "name":
        cmd["args"] = {}
    rejected(wire(cmd), "bad_signature")


def test_a_signature_cannot_move_to_another_configured_key_id() -> None:
    cmd = signed(KEY)
    cmd["kid"] = key_id(NEW_KEY.public_key())
    rejected(wire(cmd), "bad_signature", verifier(KEY, NEW_KEY))


# -- target, time -----------------------------------------------------------------------------


def test_wrong_site_is_rejected_after_the_signature() -> None:
    cmd = unsigned()
    cmd["target"] = {"site_id": "other-site", "gateway_id": GW}
    err = rejected(wire(sign(KEY, cmd)), "wrong_target")
    assert err.authenticated
    assert err.command_id == "cmd-1"


def test_wrong_gateway_is_rejected() -> None:
    cmd = unsigned()
    cmd["target"] = {"site_id": SITE, "gateway_id": "gw-02"}
    rejected(wire(sign(KEY, cmd)), "wrong_target")


def test_command_on_another_commands_topic_is_rejected() -> None:
    with pytest.raises(Rejected) as info:
        verifier().verify(wire(signed()), NOW, topic_name="status")
    assert info.value.reason == "wrong_target"


def test_a_clock_reading_nan_accepts_nothing() -> None:
    rejected(wire(signed()), "expired", now=float("nan"))


def test_expired_command_is_rejected() -> None:
    # queued at the broker while the gateway was offline for two hours
    err = rejected(wire(signed()), "expired", now=NOW + 2 * 3600)
    assert err.authenticated


def test_future_dated_command_beyond_skew_is_rejected() -> None:
    cmd = signed(iat=int(NOW) + 61, exp=int(NOW) + 100)
    rejected(wire(cmd), "not_yet_valid")


def test_lifetime_too_long_is_rejected() -> None:
    rejected(wire(signed(exp=int(NOW) + 61)), "lifetime_too_long")
    rejected(wire(signed(exp=int(NOW) + 600)), "lifetime_too_long", verifier(max_lifetime=300))
    assert verifier(max_lifetime=600).verify(wire(signed(exp=int(NOW) + 600)), NOW).exp


# -- names and arguments ------------------------------------------------------------------------


def test_unknown_name_is_rejected() -> None:
    cmd = signed()
    cmd["name"] = "open_all_doors"
    err = rejected(wire(cmd), "unknown_name")
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
    ],
)
def test_bad_args_are_rejected(name: str, args: dict[str, Any]) -> None:
    cmd = unsigned(name)
    cmd["args"] = args  # make_command would refuse these
    if any(isinstance(v, float) for v in args.values()):
        cmd = {**sign(KEY, unsigned(name)), "args": args}  # floats have no canonical form
    else:
        cmd = sign(KEY, cmd)
    err = rejected(wire(cmd), "bad_args")
    assert err.command_id == "cmd-1"
    assert not err.authenticated


def test_bad_args_are_found_before_the_signature() -> None:
    cmd = signed()
    cmd["args"] = {"door": "gate-1", "seconds": "5"}
    rejected(wire(cmd), "bad_args")


def test_lone_surrogate_in_a_string_is_rejected() -> None:
    cmd = signed(name="ack", args={"alarm_id": "a1", "by": "guard"})
    raw = wire(cmd).replace(b'"guard"', b'"gu\\ud800ard"')
    rejected(raw, "bad_args")


# -- bytes, encoding, JSON, envelope ------------------------------------------------------------


def test_oversized_command_is_rejected_before_anything_else() -> None:
    rejected(b"\xff" * 4097, "too_large")
    rejected(b" " * 4000 + wire(signed()), "too_large")
    small = verifier(max_size=100)
    rejected(wire(signed()), "too_large", small)


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b'{"v":\xc0\xaf}', b'{"by":"\xed\xa0\x80"}', b"\x80abc", b'{"a":"\xe5\x80"}'],
)
def test_non_utf8_is_rejected(raw: bytes) -> None:
    rejected(raw, "not_utf8")


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"}", b"{'v': 1}", b"NaN", b'{"v": Infinity}', b"[1,]", b"\xef\xbb\xbf{}", b"{}{}"],
)
def test_non_json_is_rejected(raw: bytes) -> None:
    err = rejected(raw, "not_json")
    assert err.command_id is None


@pytest.mark.parametrize("raw", [b"[]", b'"unlock"', b"1", b"null", b"true", b"[{}]"])
def test_json_that_is_not_an_object_is_rejected(raw: bytes) -> None:
    rejected(raw, "malformed")


def test_duplicate_keys_are_rejected() -> None:
    text = wire(signed()).decode()
    top = text[:-1] + ',"name":"silence"}'
    rejected(top.encode(), "malformed")
    nested = text.replace('"seconds": 5', '"seconds": 5, "seconds": 300')
    assert nested != text
    rejected(nested.encode(), "malformed")


def test_deep_nesting_is_rejected() -> None:
    rejected(b"[" * 2000 + b"]" * 2000, "malformed")
    rejected(b'{"a":' * 600 + b"1" + b"}" * 600, "malformed")
    cmd = signed()
    cmd["args"] = {"door": "gate-1", "seconds": 5}
    raw = wire(cmd).replace(b'"gate-1"', b"[" * 1500 + b"]" * 1500)
    rejected(raw, "malformed")
    raw = wire(cmd).replace(b'"gate-1"', b"[" * 50 + b"]" * 50)
    rejected(raw, "bad_args")


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
        ("kid", ""),
        ("kid", None),
        ("name", 3),
        ("sig", None),
        ("sig", 12),
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
    ],
)
def test_malformed_envelope_is_rejected(member: str, value: Any) -> None:
    cmd = signed()
    cmd[member] = value
    rejected(wire(cmd), "malformed")


@pytest.mark.parametrize("member", ["v", "id", "name", "target", "args", "iat", "exp", "nonce"])
def test_missing_member_is_rejected(member: str) -> None:
    cmd = signed()
    del cmd[member]
    rejected(wire(cmd), "malformed")


def test_unknown_member_is_rejected_even_if_signed() -> None:
    rejected(wire(sign(KEY, {**unsigned(), "operator": "x"})), "malformed")


def test_missing_signature_or_key_id_is_rejected() -> None:
    for member in ("sig", "kid"):
        cmd = signed()
        del cmd[member]
        rejected(wire(cmd), "malformed")


def test_floats_are_never_accepted() -> None:
    raw = wire(signed()).replace(b'"iat": 1800000000', b'"iat": 1800000000.0')
    rejected(raw, "malformed")
    raw = wire(signed()).replace(b'"iat": 1800000000', b'"iat": 18e8')
    rejected(raw, "malformed")


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
    cmd = signed()
    cmd["id"] = "a/b#c"
    assert rejected(wire(cmd), "malformed").command_id is None
    cmd = signed()
    del cmd["v"]
    assert rejected(wire(cmd), "malformed").command_id == "cmd-1"


# -- key rotation -----------------------------------------------------------------------------


def test_key_rotation_accepts_old_and_new_during_the_changeover() -> None:
    before, during, after = verifier(KEY), verifier(KEY, NEW_KEY), verifier(NEW_KEY)
    old, new = wire(signed(KEY)), wire(signed(NEW_KEY))
    assert before.verify(old, NOW).kid == key_id(KEY.public_key())
    rejected(new, "unknown_key", before)
    assert during.verify(old, NOW).kid == key_id(KEY.public_key())
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
    assert key_id(KEY.public_key()) == hashlib.sha256(raw).hexdigest()[:16]
    assert re.fullmatch(r"[0-9a-f]{16}", key_id(NEW_KEY.public_key()))


# -- the canonical form -------------------------------------------------------------------------


def test_canonical_form_drops_sig_sorts_keys_and_has_no_whitespace() -> None:
    cmd = {"sig": "x", "b": [1, True, None, False], "a": {"z": "é", "y": -3}}
    assert canonical(cmd) == '{"a":{"y":-3,"z":"é"},"b":[1,true,null,false]}'.encode()


def test_canonical_form_sorts_keys_by_utf16_code_units() -> None:
    # by code point U+E000 sorts before U+1F600; in UTF-16 (D83D DE00) it sorts after
    assert canonical({"\ue000": 1, "\U0001f600": 2, "a": 0}) == (
        '{"a":0,"\U0001f600":2,"\ue000":1}'.encode()
    )


def test_canonical_form_escapes_only_quote_backslash_and_controls() -> None:
    text = 'q"b\\n\n\t\b\f\r\x00\x1f\x7f\u2028/<é😀'
    assert canonical({"s": text}) == (
        '{"s":"q\\"b\\\\n\\n\\t\\b\\f\\r\\u0000\\u001f\x7f\u2028/<é😀"}'.encode()
    )


@pytest.mark.parametrize(
    "value",
    [1.5, 1.0, float("nan"), 2**53, -(2**53), "\ud800", {1: "a"}, b"bytes", {"a": {1, 2}}],
)
def test_canonical_form_refuses_values_outside_it(value: Any) -> None:
    with pytest.raises(ValueError, match=r"float|outside|surrogate|not a string|no canonical"):
        canonical({"x": value})


def test_canonical_form_refuses_deep_nesting() -> None:
    deep: Any = 1
    for _ in range(20):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        canonical({"x": deep})


# -- the documented test vectors ----------------------------------------------------------------

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
EXAMPLE_UNLOCK_CANONICAL = (
    '{"args":{"door":"gate-east","seconds":5},"exp":1800000060,"iat":1800000000,'
    '"id":"0b6f3a52-4e1d-4c8e-9a57-2d1b7f6c9e31","kid":"84fab1a6a2a69ca0","name":"unlock",'
    '"nonce":"q2Vt8mX1bJ4fR7sN0pLw3A","target":{"gateway_id":"gw-01","site_id":"huayuan-b7"},'
    '"v":1}'
)
EXAMPLE_UNLOCK_SIG = (
    "ZXhjF9-xum78DFepkemkCRYUwMLBxD-RxZLBII2gb0hSLYnI48_-1EiS7JjDuEXngza-saH3cOpbPGxzIU7ACQ"
)
EXAMPLE_ACK_CANONICAL = (
    '{"args":{"alarm_id":"4be1c0d2a9f04e11","by":"值班 王伟"},"exp":1800000130,'
    '"iat":1800000100,"id":"c-20270115-0001","kid":"84fab1a6a2a69ca0","name":"ack",'
    '"nonce":"Yk3pQ9wZr6T2vN8sLm4Hxg","target":{"gateway_id":"gw-01","site_id":"huayuan-b7"},'
    '"v":1}'
)
EXAMPLE_ACK_SIG = (
    "4FSCOZ9-XXM0AO6MfzCrNi42zNUrdgRED7T88nMlaLYwEAiE9pHvF5k2GkYJPfDbN62aYElZkfw6ks3tBFn2Dw"
)


def _published(canonical_text: str, sig: str) -> str:
    """The message as ``cgw sign`` prints it: members sorted, ``sig`` among them."""
    cmd = {**json.loads(canonical_text), "sig": sig}
    return json.dumps(cmd, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _example_key() -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(EXAMPLE_PRIVATE_PEM.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


@pytest.mark.parametrize(
    ("canonical_text", "sig", "now"),
    [
        (EXAMPLE_UNLOCK_CANONICAL, EXAMPLE_UNLOCK_SIG, 1_800_000_000.0),
        (EXAMPLE_ACK_CANONICAL, EXAMPLE_ACK_SIG, 1_800_000_100.0),
    ],
)
def test_documented_vectors_sign_and_verify(canonical_text: str, sig: str, now: float) -> None:
    key = _example_key()
    public = serialization.load_pem_public_key(EXAMPLE_PUBLIC_PEM.encode())
    assert isinstance(public, Ed25519PublicKey)
    assert key_id(public) == key_id(key.public_key()) == EXAMPLE_KID
    body = json.loads(canonical_text)
    assert canonical(body) == canonical_text.encode("utf-8")
    assert sign(key, body)["sig"] == sig  # Ed25519 is deterministic (RFC 8032)
    signed_json = _published(canonical_text, sig)
    cmd = Verifier({EXAMPLE_KID: public}, "huayuan-b7", "gw-01").verify(signed_json.encode(), now)
    assert cmd.kid == EXAMPLE_KID


def test_documented_vectors_are_the_ones_in_the_docs() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    for text in (
        EXAMPLE_PRIVATE_PEM,
        EXAMPLE_PUBLIC_PEM,
        EXAMPLE_KID,
        EXAMPLE_UNLOCK_CANONICAL,
        EXAMPLE_UNLOCK_SIG,
        EXAMPLE_ACK_CANONICAL,
        EXAMPLE_ACK_SIG,
        _published(EXAMPLE_UNLOCK_CANONICAL, EXAMPLE_UNLOCK_SIG),
        canonical(json.loads(EXAMPLE_ACK_CANONICAL)).hex(),
    ):
        assert text in doc, text
    assert f"The signed bytes are {len(EXAMPLE_UNLOCK_CANONICAL.encode())} bytes" in doc
    assert f"The {len(EXAMPLE_ACK_CANONICAL.encode())} signed bytes" in doc


def test_the_platform_side_snippet_in_the_docs_runs() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    section = doc.split("## Verifying on the platform side", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "assert verify_command(keys, payload) == signed" in snippet
    exec(compile(snippet, f"{DOCS}:platform-side", "exec"), {"__name__": "docs_snippet"})


# -- fuzz -----------------------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = signed()
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["gate-1", SITE, GW, "unlock", "ack", VALID["sig"], VALID["kid"]]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from([*VALID, "door", "seconds", "x"]) | st.text(), inner)
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


@FUZZ
@given(json_values, st.booleans())
def test_fuzz_json_only_ever_raises_rejected(value: Any, ascii_only: bool) -> None:
    assert _outcome(verifier(), json.dumps(value, ensure_ascii=ascii_only).encode()) in REASONS


@FUZZ
@given(
    st.sampled_from([*VALID, "extra"]),
    st.one_of(st.just(None), json_values),
    st.booleans(),
)
def test_fuzz_mutated_commands_never_pass(member: str, value: Any, delete: bool) -> None:
    cmd = dict(VALID)
    if delete:
        cmd.pop(member, None)
    else:
        cmd[member] = value
    outcome = _outcome(verifier(), json.dumps(cmd).encode())
    if cmd != VALID:
        assert outcome in REASONS


@FUZZ
@given(st.integers(0, len(wire(VALID)) - 1), st.integers(0, 255))
def test_fuzz_byte_flips_never_pass(pos: int, byte: int) -> None:
    raw = bytearray(wire(VALID))
    raw[pos] = byte
    try:
        verifier().verify(bytes(raw), NOW)
    except Rejected:
        return
    # what passes can only differ in JSON whitespace (a space turned into a tab or newline)
    assert json.loads(raw) == VALID


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
    cmd = sign(KEY, make_command(name, args, site_id=SITE, gateway_id=GW, now=NOW))
    raw = json.dumps(cmd, ensure_ascii=ascii_only, indent=indent).encode()
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


def test_sign_refuses_a_mismatched_key_id() -> None:
    with pytest.raises(ValueError, match="names key"):
        sign(KEY, {**unsigned(), "kid": key_id(NEW_KEY.public_key())})


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
    cmd = Verifier(keyring, SITE, GW).verify(payload.encode(), json.loads(payload)["iat"])
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
    base = ["sign", "--key", str(tmp_path / "platform.key"), "--site", SITE, "--gateway", GW]
    assert cgw(*base, *extra) == 2
    out = capsys.readouterr()
    assert message in out.err
    assert "sig" not in out.out


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
