"""The legacy command envelope, accepted during the transition to JWS: the JSON object with
``kid`` and ``sig`` over its RFC 8785 form. Its signature checks, its canonical form and its
documented test vectors; everything it shares with JWS (members, arguments, target, time) is
tested once, in test_commands.py."""

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.commands.legacy import canonical, sign_legacy
from gateway.commands.rejected import Rejected
from gateway.commands.signing import make_command
from gateway.commands.verify import Verifier
from gateway.config.keys import key_id
from tests.unit.test_commands import (
    DOCS,
    EXAMPLE_KID,
    EXAMPLE_PUBLIC_PEM,
    GW,
    KEY,
    NEW_KEY,
    NOW,
    SIGNATURE_MANGLES,
    SITE,
    STRANGER,
    _example_key,
)
from tests.unit.test_commands import verifier as verifier_for


def verifier(*private: Ed25519PrivateKey) -> Verifier:
    return verifier_for(*private, legacy=True)


def signed(key: Ed25519PrivateKey = KEY, **kw: Any) -> dict[str, Any]:
    cmd = make_command(
        "unlock",
        {"door": "gate-1", "seconds": 5},
        site_id=SITE,
        gateway_id=GW,
        now=NOW,
        command_id="cmd-1",
        nonce="n" * 22,
    )
    return sign_legacy(key, {**cmd, **kw})


def wire(cmd: Any) -> bytes:
    return json.dumps(cmd).encode()


def rejected(raw: bytes, reason: str, v: Verifier | None = None) -> Rejected:
    with pytest.raises(Rejected) as info:
        (v or verifier()).verify(raw, NOW)
    assert info.value.reason == reason, info.value
    assert info.value.form == "legacy"
    return info.value


def test_the_legacy_envelope_is_accepted_while_enabled() -> None:
    cmd = verifier().verify(wire(signed()), NOW)
    assert (cmd.id, cmd.kid, cmd.form) == ("cmd-1", key_id(KEY.public_key()), "legacy")


def test_its_wire_formatting_does_not_matter_only_content() -> None:
    cmd = signed()
    pretty = json.dumps(dict(reversed(cmd.items())), indent=3, ensure_ascii=True).encode()
    assert verifier().verify(b"\n" + pretty, NOW).nonce == cmd["nonce"]


def test_a_jws_signature_is_not_accepted_in_the_envelope() -> None:
    rejected(wire({**signed(), "sig": "x" * 86}), "bad_signature")


def test_signature_over_different_content_is_rejected() -> None:
    cmd = {**signed(), "sig": signed(args={"door": "gate-2", "seconds": 5})["sig"]}
    err = rejected(wire(cmd), "bad_signature")
    assert err.command_id == "cmd-1"
    assert not err.authenticated


def test_unknown_keys_and_borrowed_key_ids_are_rejected() -> None:
    rejected(wire(signed(STRANGER)), "unknown_key")
    stranger = sign_legacy(STRANGER, {k: v for k, v in signed().items() if k != "kid"})
    rejected(wire({**stranger, "kid": key_id(KEY.public_key())}), "bad_signature")
    moved = {**signed(KEY), "kid": key_id(NEW_KEY.public_key())}
    rejected(wire(moved), "bad_signature", verifier(KEY, NEW_KEY))


@pytest.mark.parametrize(
    "mangle",
    [
        *SIGNATURE_MANGLES,
        pytest.param(lambda s: base64.b64encode(b"\1" * 64).decode(), id="base64-not-url"),
    ],
)
def test_broken_signatures_are_rejected(mangle: Callable[[str], str]) -> None:
    cmd = signed()
    rejected(wire({**cmd, "sig": mangle(cmd["sig"])}), "bad_signature")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("args", {"door": "gate-2", "seconds": 5}),
        ("target", {"site_id": SITE, "gateway_id": "gw-02"}),
        ("exp", int(NOW) + 30),
        ("nonce", "m" * 22),
        ("id", "cmd-2"),
    ],
)
def test_any_change_after_signing_is_rejected(member: str, value: Any) -> None:
    rejected(wire({**signed(), member: value}), "bad_signature")


@pytest.mark.parametrize(
    ("member", "value"), [("kid", ""), ("kid", None), ("sig", None), ("sig", 12), ("x", 1)]
)
def test_a_malformed_envelope_is_rejected(member: str, value: Any) -> None:
    rejected(wire({**signed(), member: value}), "malformed")


def test_missing_signature_or_key_id_is_rejected() -> None:
    for member in ("sig", "kid"):
        cmd = signed()
        del cmd[member]
        rejected(wire(cmd), "malformed")


def test_what_is_not_json_is_rejected() -> None:
    rejected(b"{not json", "not_json")
    rejected(wire(signed())[:-1] + b',"name":"status"}', "malformed")


def test_sign_legacy_refuses_a_mismatched_key_id() -> None:
    with pytest.raises(ValueError, match="names key"):
        sign_legacy(KEY, {**signed(), "kid": key_id(NEW_KEY.public_key())})


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

UNLOCK_CANONICAL = (
    '{"args":{"door":"gate-east","seconds":5},"exp":1800000060,"iat":1800000000,'
    '"id":"0b6f3a52-4e1d-4c8e-9a57-2d1b7f6c9e31","kid":"84fab1a6a2a69ca0","name":"unlock",'
    '"nonce":"q2Vt8mX1bJ4fR7sN0pLw3A","target":{"gateway_id":"gw-01","site_id":"huayuan-b7"},'
    '"v":1}'
)
UNLOCK_SIG = (
    "ZXhjF9-xum78DFepkemkCRYUwMLBxD-RxZLBII2gb0hSLYnI48_-1EiS7JjDuEXngza-saH3cOpbPGxzIU7ACQ"
)
ACK_CANONICAL = (
    '{"args":{"alarm_id":"4be1c0d2a9f04e11","by":"值班 王伟"},"exp":1800000130,'
    '"iat":1800000100,"id":"c-20270115-0001","kid":"84fab1a6a2a69ca0","name":"ack",'
    '"nonce":"Yk3pQ9wZr6T2vN8sLm4Hxg","target":{"gateway_id":"gw-01","site_id":"huayuan-b7"},'
    '"v":1}'
)
ACK_SIG = "4FSCOZ9-XXM0AO6MfzCrNi42zNUrdgRED7T88nMlaLYwEAiE9pHvF5k2GkYJPfDbN62aYElZkfw6ks3tBFn2Dw"


def _published(canonical_text: str, sig: str) -> str:
    """The envelope as the legacy ``cgw sign`` printed it: members sorted, ``sig`` among them."""
    cmd = {**json.loads(canonical_text), "sig": sig}
    return json.dumps(cmd, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    ("canonical_text", "sig", "now"),
    [(UNLOCK_CANONICAL, UNLOCK_SIG, 1_800_000_000.0), (ACK_CANONICAL, ACK_SIG, 1_800_000_100.0)],
)
def test_documented_vectors_sign_and_verify(canonical_text: str, sig: str, now: float) -> None:
    key = _example_key()
    public = serialization.load_pem_public_key(EXAMPLE_PUBLIC_PEM.encode())
    assert isinstance(public, Ed25519PublicKey)
    body = json.loads(canonical_text)
    assert canonical(body) == canonical_text.encode("utf-8")
    assert sign_legacy(key, body)["sig"] == sig  # Ed25519 is deterministic (RFC 8032)
    v = Verifier({EXAMPLE_KID: public}, "huayuan-b7", "gw-01", legacy=True)
    cmd = v.verify(_published(canonical_text, sig).encode(), now)
    assert (cmd.kid, cmd.form) == (EXAMPLE_KID, "legacy")


def test_documented_vectors_are_the_ones_in_the_docs() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    for text in (
        UNLOCK_CANONICAL,
        UNLOCK_SIG,
        ACK_CANONICAL,
        ACK_SIG,
        _published(UNLOCK_CANONICAL, UNLOCK_SIG),
        canonical(json.loads(ACK_CANONICAL)).hex(),
    ):
        assert text in doc, text


# -- fuzz -----------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = signed()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@FUZZ
@given(st.sampled_from([*VALID, "extra"]), st.one_of(st.just(None), json_values), st.booleans())
def test_fuzz_mutated_envelopes_never_pass(member: str, value: Any, delete: bool) -> None:
    cmd = dict(VALID)
    if delete:
        cmd.pop(member, None)
    else:
        cmd[member] = value
    try:
        verifier().verify(json.dumps(cmd).encode(), NOW)
    except Rejected:
        return
    assert cmd == VALID


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
