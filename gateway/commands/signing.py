"""Commands signed by the platform: key ids, key files, building and signing commands.

A command goes on the wire as a JWS in compact serialisation (RFC 7515 §7.1) signed with
EdDSA over Ed25519 (RFC 8037): ``base64url(header) "." base64url(payload) "." base64url(sig)``.
The signature covers exactly the bytes sent, so the platform signs with any JOSE library and
needs no canonical form (docs/commands.md, "Wire format"). ``sign`` is the platform side, for
``cgw sign`` and tests; it uses PyJWT, as the verifier does (``gateway.commands.jws``).

Key ids are the first 16 hex digits of SHA-256 over the 32 raw bytes of the public key, so the
platform and every gateway compute the same id from the key alone (``key_id`` and the public-key
loaders live in ``gateway.config.keys``, which the config checks key files with). Only the
platform holds a private key; a gateway holds public keys, so a gateway taken apart cannot sign
commands.

Errors: ``sign`` and ``make_command`` raise ``ValueError`` on a value outside the
format; the key loaders raise ``ConfigError`` naming the file; ``keygen`` raises
``FileExistsError`` rather than overwrite a key and ``OSError`` when it cannot write.
"""

import base64
import json
import os
import re
import secrets
import stat
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.commands.model import (
    ALG,
    ARGS,
    DEFAULT_MAX_LIFETIME,
    ID_PATTERN,
    NAME_PATTERN,
    NAMES,
    NONCE_PATTERN,
    TYP,
    VERSION,
)
from gateway.config.keys import key_id
from gateway.core.errors import ConfigError

SIGNATURE_CHARS: Final = 86  # base64url without padding of a 64-byte Ed25519 signature
_B64URL = re.compile("[A-Za-z0-9_-]*")


# -- base64url ------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 4648 §5), as JWS segments and the legacy ``sig`` are."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of ``text``, which must be their canonical base64url without padding.

    Canonical: only ``A-Z a-z 0-9 - _``, no ``=``, and the unused low bits of the last
    character zero; so one value has exactly one encoding.

    Raises:
        ValueError: ``text`` is not the canonical encoding of any bytes.
    """
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url without padding")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise ValueError("not the canonical base64url of its bytes")
    return data


# -- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyFiles:
    """What ``keygen`` wrote."""

    private: Path  # PEM PKCS#8, mode 0600: stays on the platform
    public: Path  # PEM SubjectPublicKeyInfo: goes to every gateway
    kid: str


def keygen(out_dir: Path, name: str = "platform") -> KeyFiles:
    """Make a key pair: ``<name>.key`` (private, mode 0600) and ``<name>.pub`` in ``out_dir``.

    ``out_dir`` is created (mode 0700) if missing. Existing files are never overwritten.

    Raises:
        ValueError: ``name`` is not a plain file name (letters, digits, ``_ . -``).
        FileExistsError: either file exists already.
        OSError: the files could not be written.
    """
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"key name {name!r}: letters, digits, '_', '.', '-' (at most 63)")
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except OSError:
        private_path.unlink(missing_ok=True)
        raise
    return KeyFiles(private_path, public_path, key_id(key.public_key()))


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never follow or replace something that appeared since the check above
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits off the public key's mode
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in PEM file ``path`` (unencrypted PKCS#8).

    Raises:
        ConfigError: unreadable, readable by group or others, not PEM, or not Ed25519.
    """
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                [
                    f"{path}: private key is readable by group or others"
                    f" (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
                ]
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the private key: {exc.strerror}"]) from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError([f"{path}: not an unencrypted PEM private key"]) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError([f"{path}: a {type(key).__name__}, not an Ed25519 private key"])
    return key


# -- making and signing commands ---------------------------------------------------------------


def make_command(
    name: str,
    args: Mapping[str, Any],
    *,
    site_id: str,
    gateway_id: str,
    now: float,
    ttl: int = DEFAULT_MAX_LIFETIME,
    command_id: str | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """An unsigned command, valid from ``int(now)`` for ``ttl`` seconds; pass it to ``sign``.

    ``command_id`` defaults to a random UUID, ``nonce`` to 128 random bits in base64url.

    Raises:
        ValueError: an unknown name, arguments its schema refuses, a bad id, nonce or ttl.
    """
    if name not in NAMES:
        raise ValueError(f"unknown command {name!r}: one of {', '.join(NAMES)}")
    try:
        ARGS[name].model_validate(dict(args), strict=True)
    except ValidationError as exc:
        raise ValueError(f"arguments of {name}: {describe(exc)}") from None
    for label, value in (("site id", site_id), ("gateway id", gateway_id)):
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(f"{label} {value!r}: letters, digits, '_', '.', '-' (at most 63)")
    command_id = str(uuid.uuid4()) if command_id is None else command_id
    if not re.fullmatch(ID_PATTERN, command_id):
        raise ValueError(f"command id {command_id!r}: 1-64 of letters, digits, '_', '.', '-'")
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    if not re.fullmatch(NONCE_PATTERN, nonce):
        raise ValueError(f"nonce {nonce!r}: 16-64 of letters, digits, '_', '-'")
    if type(ttl) is not int or ttl < 1:
        raise ValueError(f"ttl {ttl!r}: a positive number of seconds")
    iat = int(now)
    return {
        "v": VERSION,
        "id": command_id,
        "name": name,
        "target": {"site_id": site_id, "gateway_id": gateway_id},
        "args": dict(args),
        "iat": iat,
        "exp": iat + ttl,
        "nonce": nonce,
    }


def sign(private_key: Ed25519PrivateKey, command: Mapping[str, Any]) -> str:
    """``command`` signed as a JWS in compact serialisation: what goes on ``cmd/<name>``.

    The protected header is ``{"alg":"EdDSA","kid":<key id>,"typ":"cgw-cmd+jwt"}``; the
    payload is ``command`` as compact JSON in UTF-8. Nothing is checked beyond what JSON can
    carry: ``make_command`` builds valid commands, and tests sign invalid ones on purpose.

    Raises:
        ValueError: ``command`` carries ``kid`` or ``sig`` (members of the legacy envelope
            only; a JWS names its key in the header), or a value JSON cannot carry.
    """
    for member in ("kid", "sig"):
        if member in command:
            raise ValueError(f"{member!r} belongs to the legacy envelope, not a JWS payload")
    try:
        payload = json.dumps(dict(command), separators=(",", ":"), ensure_ascii=False,
                             allow_nan=False).encode("utf-8")  # fmt: skip
    except (TypeError, UnicodeEncodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    headers = {"kid": key_id(private_key.public_key()), "typ": TYP}
    return jwt.PyJWS().encode(payload, private_key, algorithm=ALG, headers=headers)


def describe(exc: ValidationError) -> str:
    """A validation error as one short line: ``seconds: Input should be ...; door: ...``."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:4]:
        where = ".".join(str(p) for p in err["loc"]) or "args"
        parts.append(f"{clip(where)}: {err['msg']}")
    return "; ".join(parts)


def clip(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters, for messages that quote untrusted input."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
