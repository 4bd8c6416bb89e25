"""The platform's command public keys as the gateway holds them: key files and key ids.

The config loads them to check ``commands.public_keys`` (``gateway.config.commands``); the
command channel (``gateway.commands``) verifies with them. Imports cryptography: import this
module only where commands are configured.

- ``key_id(key)``: the first 16 hex digits of SHA-256 over the key's 32 raw bytes, so the
  platform and every gateway compute the same id from the key alone.
- ``load_public_key(path)`` / ``load_public_keys(paths)``: Ed25519 keys from PEM files
  (SubjectPublicKeyInfo); ``ConfigError`` naming each file that fails.
"""

import hashlib
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.core.errors import ConfigError

__all__ = ["key_id", "load_public_key", "load_public_keys"]


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 over the key's 32 raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM file ``path`` (SubjectPublicKeyInfo).

    Raises:
        ConfigError: unreadable, not PEM, or not Ed25519.
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the public key: {exc.strerror}"]) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError([f"{path}: not a PEM public key"]) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError([f"{path}: a {type(key).__name__}, not an Ed25519 public key"])
    return key


def load_public_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """The keys in ``paths`` by key id, for ``Verifier``; during a rotation, old and new.

    Raises:
        ConfigError: listing every file that failed, an empty list, or the same key twice.
    """
    keys: dict[str, Ed25519PublicKey] = {}
    errors: list[str] = []
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            key = load_public_key(path)
        except ConfigError as exc:
            errors += exc.errors
            continue
        kid = key_id(key)
        if kid in seen:
            errors.append(f"{path}: the same key as {seen[kid]} (key id {kid})")
            continue
        seen[kid] = path
        keys[kid] = key
    if not keys and not errors:
        errors.append("no command public key configured")
    if errors:
        raise ConfigError(errors)
    return keys
