"""Keys of keyed hashes kept in files (the privacy key that pseudonymises resident ids), and
the config section that names them (``privacy:``).

``load_key(path)`` reads one and ``decode_key`` judges it (``gateway.pipeline.privacy`` says
which forms are taken and why); both raise ``ConfigError`` naming the file and the problem,
never any content. They live with the config so that ``cgw check-config`` refuses a key the
daemon would refuse at start.
"""

import base64
import binascii
import re
import string
from pathlib import Path

from pydantic import Field, field_validator

from gateway.config.base import Model, SecretFile
from gateway.core.errors import ConfigError

__all__ = ["MIN_DISTINCT", "MIN_KEY", "PrivacyConfig", "decode_key", "load_key"]

MIN_KEY = 32  # bytes
MIN_DISTINCT = 16  # distinct byte values in a key; 32 random bytes have about 30
MAX_KEY_FILE = 4096  # bytes
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_B64 = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}")
_PRINTABLE = frozenset(string.printable.encode())


def decode_key(data: bytes, source: str = "key") -> bytes:
    """The key bytes ``data`` holds (hex, base64 or raw); raises ``ConfigError``.

    Messages name ``source`` and the problem, never any content.
    """
    if len(data) > MAX_KEY_FILE:
        raise ConfigError([f"{source}: larger than {MAX_KEY_FILE} bytes: not a key file"])
    text = data.rstrip(b"\r\n")
    key: bytes | None = None
    if _HEX.fullmatch(text) and len(text) % 2 == 0 and len(text) >= 2 * MIN_KEY:
        key = bytes.fromhex(text.decode("ascii"))
    elif _B64.fullmatch(text):
        padded = text.rstrip(b"=") + b"=" * (-len(text.rstrip(b"=")) % 4)
        try:
            key = base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
        except (binascii.Error, ValueError):
            key = None
        if key is not None and len(key) < MIN_KEY:
            key = None
    if key is None:
        if text and all(b in _PRINTABLE for b in text):
            raise ConfigError(
                [
                    f"{source}: text that is neither 64+ hex digits nor base64 of 32+ bytes;"
                    " a passphrase is not a key (make one: head -c 32 /dev/urandom | base64)"
                ]
            )
        key = data
    if len(key) < MIN_KEY:
        raise ConfigError([f"{source}: {len(key)} bytes of key, at least {MIN_KEY} needed"])
    if len(set(key)) < MIN_DISTINCT:
        raise ConfigError([f"{source}: the key is not random (too few distinct byte values)"])
    return key


def load_key(path: Path) -> bytes:
    """The key in the file at ``path`` (see the module docstring); raises ``ConfigError``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the key: {exc.strerror}"]) from None
    return decode_key(data, str(path))


class PrivacyConfig(Model):
    """Pseudonymisation of resident identifiers (``privacy:`` at the config root)."""

    key_file: SecretFile = Field(
        description="Per-site key of the keyed hash: 32+ random bytes, raw, hex or base64 "
        "(e.g. a systemd credential); mode 0600"
    )
    previous_key_file: SecretFile | None = Field(
        None,
        description="The key before a rotation: events carry both pseudonyms while it is set; "
        "remove it (and destroy the file) once the changeover window is over",
    )

    @field_validator("key_file", "previous_key_file")
    @classmethod
    def _a_key(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                load_key(path)  # what the daemon would refuse at start, refused here
            except ConfigError as exc:
                raise ValueError(exc.errors[0]) from None
        return path
