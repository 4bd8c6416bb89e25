"""The platform's X25519 public key that sensitive record fields are sealed to.

``load_public_key(path)`` reads a PEM public key (SubjectPublicKeyInfo, as
``openssl pkey -pubout`` writes it) or the 32 raw bytes as base64 or hex text; raises
``ValueError`` naming the file and the problem. ``key_id(key)`` is the first 16 hex digits of
SHA-256 over the 32 raw bytes: the envelope names the key with it, so the platform knows which
private key opens it after a rotation. Imports cryptography: only where records are configured.
"""

import base64
import binascii
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

__all__ = ["key_id", "load_public_key", "raw"]


def raw(key: X25519PublicKey) -> bytes:
    """The key's 32 raw bytes."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: X25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 over the key's 32 raw bytes."""
    return hashlib.sha256(raw(key)).hexdigest()[:16]


def load_public_key(path: Path) -> X25519PublicKey:
    """The X25519 public key in ``path``; raises ``ValueError``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise ValueError(f"{path}: not a PEM public key") from None
        if not isinstance(key, X25519PublicKey):
            raise ValueError(f"{path}: a {type(key).__name__}, not an X25519 public key")
        return key
    text = data.strip()
    decoded: bytes | None = None
    try:
        decoded = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        try:
            decoded = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            decoded = None
    if decoded is None or len(decoded) != 32:
        raise ValueError(f"{path}: neither a PEM X25519 public key nor 32 bytes in base64 or hex")
    return X25519PublicKey.from_public_bytes(decoded)
