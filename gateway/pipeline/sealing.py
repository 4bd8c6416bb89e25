"""Sealed boxes for sensitive record fields, and the pipeline stage that seals them.

Contract:
- ``seal(key, plaintext, aad)`` encrypts to the platform's X25519 public key with a fresh
  ephemeral key pair: the shared secret goes through HKDF-SHA256 (salt: the ephemeral and the
  recipient's public keys; info: ``ALG``) into a ChaCha20-Poly1305 key and nonce; ``aad``
  binds the envelope to its record (site, gateway, terminal, kind, record id), so an envelope
  moved to another record does not open. The envelope is ``{"alg", "kid", "epk", "ct"}``
  (base64 text): ``kid`` names the recipient key (``gateway.config.sealing_key.key_id``), so a
  platform that rotated its key knows which private key opens it. The gateway keeps no
  private key and forgets the ephemeral one: it cannot open what it sealed.
- ``open_sealed(private_key, envelope, aad)`` is the platform's side (used by the tests and
  shown in ``docs/privacy.md``); raises ``ValueError`` for a wrong key, a wrong ``aad`` or a
  tampered envelope.
- ``Seal`` is the stage, first of the pipeline after validation: a ``TerminalRecord`` leaves
  with its ``personal`` values pseudonymised (``Pseudonymiser``, as door events' person ids)
  and its ``sensitive`` values sealed together in one envelope; ``private`` is then empty.
  Every other item passes untouched. Values are never logged, counted or kept.
"""

import base64
import dataclasses
import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.config.sealing_key import key_id, raw
from gateway.core.items import Item
from gateway.core.messages import Json
from gateway.core.records import TerminalRecord
from gateway.pipeline.privacy import Pseudonymiser

ALG = "X25519-HKDF-SHA256-ChaCha20Poly1305"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(shared: bytes, epk: bytes, pk: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 44, salt=epk + pk, info=ALG.encode()).derive(shared)
    return okm[:32], okm[32:]


def seal(key: X25519PublicKey, plaintext: bytes, aad: bytes) -> dict[str, str]:
    """``plaintext`` sealed to ``key`` (see the module docstring)."""
    ephemeral = X25519PrivateKey.generate()
    epk = raw(ephemeral.public_key())
    secret, nonce = _derive(ephemeral.exchange(key), epk, raw(key))
    ct = ChaCha20Poly1305(secret).encrypt(nonce, plaintext, aad)
    return {"alg": ALG, "kid": key_id(key), "epk": _b64(epk), "ct": _b64(ct)}


def open_sealed(private: X25519PrivateKey, envelope: Mapping[str, str], aad: bytes) -> bytes:
    """The plaintext of ``envelope``; raises ``ValueError`` if it does not open."""
    if envelope.get("alg") != ALG:
        raise ValueError(f"unknown algorithm {envelope.get('alg')!r}")
    pk = raw(private.public_key())
    if envelope.get("kid") != key_id(private.public_key()):
        raise ValueError("sealed to another key")
    try:
        epk = base64.b64decode(envelope["epk"], validate=True)
        ct = base64.b64decode(envelope["ct"], validate=True)
        peer = X25519PublicKey.from_public_bytes(epk)
        secret, nonce = _derive(private.exchange(peer), epk, pk)
        return ChaCha20Poly1305(secret).decrypt(nonce, ct, aad)
    except (KeyError, ValueError, InvalidTag) as exc:
        raise ValueError(f"the envelope does not open: {type(exc).__name__}") from None


def record_aad(site: str, gateway: str, device: str, kind: str, record_id: str) -> bytes:
    """What an envelope is bound to: the record it belongs to."""
    return json.dumps([site, gateway, device, kind, record_id]).encode()


def private_key_pem(private: X25519PrivateKey) -> bytes:
    """A private key as PEM (PKCS#8), for the platform's side and the tests."""
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip


class Seal:
    """The pipeline's seal stage (see the module docstring)."""

    name = "seal"

    def __init__(
        self, site: str, gateway: str, key: X25519PublicKey | None, names: Pseudonymiser | None
    ) -> None:
        self.site, self.gateway = site, gateway
        self._key, self._names = key, names

    def __call__(self, item: Item) -> Item | None:
        if not isinstance(item, TerminalRecord) or not item.private:
            return item
        classes = dict(item.classes)
        persons: list[tuple[str, str]] = []
        hidden: dict[str, Json] = {}
        for name, value in item.private:
            if classes.get(name) == "personal":
                if self._names is None:
                    raise ValueError("a personal record field with no privacy key to hide it")
                persons.append((name, self._names.pseudonym(str(value))))
            else:
                hidden[name] = value
        sealed = None
        if hidden:
            if self._key is None:
                raise ValueError("a sensitive record field with no key to seal it to")
            aad = record_aad(self.site, self.gateway, item.device, item.kind, item.record_id)
            sealed = seal(self._key, json.dumps(hidden, ensure_ascii=False).encode(), aad)
        return dataclasses.replace(item, private=(), persons=tuple(persons), sealed=sealed)
