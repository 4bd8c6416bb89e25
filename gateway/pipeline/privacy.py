"""Pseudonyms of resident identifiers: keyed hashes with a per-site secret, rotatable.

Contract:
- ``Pseudonymiser.pseudonym(raw)`` is ``p1:<key id>:<hex>``: ``<hex>`` is the first 32 hex
  digits (128 bits) of ``HMAC-SHA256(key, site_id + "\\x00" + raw)`` over UTF-8, ``<key id>``
  4 hex digits derived from the key (never the key itself). The same person at the same site
  under the same key always gets the same pseudonym; two sites never share one, because the
  site id is in the hashed input *and* each site has its own key. A plain hash would not do:
  room, phone and ID-card numbers are small spaces, brute-forced in seconds (ENISA 2019, §3.2).
- The raw identifier is used for the one HMAC call and forgotten: it is never kept in an
  attribute, logged, put in an exception message or shown by ``repr``. Keys are kept in slots
  and never shown either.
- ``token(raw, domain)`` hashes other values that may embed an identifier (``t1:`` prefix, the
  domain in the input), so they stay stable and comparable without showing the value.

Keys (``load_key``): one file, mode 0600 (systemd ``LoadCredential=`` puts it in
``$CREDENTIALS_DIRECTORY``), holding at least 32 bytes of entropy in one of three forms, tried
in this order: hex text (64 or more hex digits), base64 text (standard or URL-safe alphabet,
decoding to 32 bytes or more), or raw bytes (32 or more, e.g. ``head -c 32 /dev/urandom``). A
trailing newline of the text forms is ignored. Printable text that is neither hex nor base64 is
refused: it is a passphrase, not a key. A key with fewer than 16 distinct byte values is
refused as not random. Make one with ``head -c 32 /dev/urandom | base64 > pseudonym.key``.

Rotation (say a key is suspected leaked, or yearly):
1. Make a new key file; configure it as ``privacy.key_file`` and the old one as
   ``privacy.previous_key_file``; reload. From now on ``pseudonyms(raw)`` gives the new
   pseudonym first and the old one second, so every event of the changeover window carries
   both and the platform maps each old pseudonym to its new one as residents pass by.
2. After the window (at least the personal-data retention, so no buffered event is left with
   the old pseudonym only), remove ``previous_key_file`` from the config, reload, and destroy
   the old key file (``shred -u``). The old pseudonyms can then no longer be reproduced.

``Pseudonymise`` is the pipeline stage that applies a ``Pseudonymiser`` to door events.
"""

import dataclasses
import hashlib
import hmac
from pathlib import Path

from gateway.config.secret_keys import load_key
from gateway.core.access import AccessEvent
from gateway.core.errors import ConfigError
from gateway.core.items import Item

VERSION = "p1"  # bump when the construction changes: old and new pseudonyms never compare equal
TOKEN_VERSION = "t1"
HEX_DIGITS = 32  # 128 bits, the floor RELIABILITY.md S13 sets


def key_id(key: bytes) -> str:
    """4 hex digits naming ``key`` in pseudonyms; a one-way function of the key."""
    return hmac.new(key, b"cgw pseudonym key id", hashlib.sha256).hexdigest()[:4]


class Pseudonymiser:
    """Keyed pseudonyms for one site, with an optional previous key during a rotation."""

    __slots__ = ("_keys", "_site")

    def __init__(self, site_id: str, key: bytes, previous: bytes | None = None) -> None:
        """Raises ``ConfigError`` for an empty site id or keys that cannot be told apart."""
        if not site_id or "\x00" in site_id:
            raise ConfigError(["privacy: the site id must be non-empty and free of NUL"])
        keys = [(key_id(key), key)]
        if previous is not None:
            if hmac.compare_digest(previous, key):
                raise ConfigError(["privacy.previous_key_file: the same key as key_file"])
            if key_id(previous) == keys[0][0]:
                raise ConfigError(
                    ["privacy.key_file: its key id collides with the previous key's; make another"]
                )
            keys.append((key_id(previous), previous))
        self._site = site_id.encode("utf-8") + b"\x00"
        self._keys: tuple[tuple[str, bytes], ...] = tuple(keys)

    @classmethod
    def from_files(
        cls, site_id: str, key_file: Path, previous_key_file: Path | None = None
    ) -> "Pseudonymiser":
        """Load the key files; raises ``ConfigError``."""
        previous = load_key(previous_key_file) if previous_key_file is not None else None
        return cls(site_id, load_key(key_file), previous)

    @property
    def key_id(self) -> str:
        """The current key's id, as it appears in pseudonyms."""
        return self._keys[0][0]

    @property
    def previous_key_id(self) -> str | None:
        """The previous key's id while a rotation is under way, else None."""
        return self._keys[1][0] if len(self._keys) > 1 else None

    def pseudonym(self, raw: str) -> str:
        """The current pseudonym of ``raw``; raises ``ValueError`` if ``raw`` is empty."""
        return self.pseudonyms(raw)[0]

    def pseudonyms(self, raw: str) -> tuple[str, ...]:
        """The pseudonym under each key: current first, then the previous one (if any)."""
        if not raw:
            raise ValueError("an empty identifier has no pseudonym")
        # surrogatepass: a JSON "\ud800" is a str Python cannot encode strictly; stay total
        data = self._site + raw.encode("utf-8", "surrogatepass")
        return tuple(
            f"{VERSION}:{kid}:{hmac.new(key, data, hashlib.sha256).hexdigest()[:HEX_DIGITS]}"
            for kid, key in self._keys
        )

    def token(self, raw: str, domain: str) -> str:
        """A stable stand-in for a value that may embed an identifier (current key)."""
        kid, key = self._keys[0]
        data = self._site + domain.encode() + b"\x00" + raw.encode("utf-8", "surrogatepass")
        digest = hmac.new(key, data, hashlib.sha256).hexdigest()[:HEX_DIGITS]
        return f"{TOKEN_VERSION}:{kid}:{digest}"

    def __repr__(self) -> str:
        site = self._site[:-1].decode()
        previous = self.previous_key_id
        return f"Pseudonymiser(site={site!r}, key_id={self.key_id!r}, previous={previous!r})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Pseudonymiser holds keys and is not pickled")


MIN_EMBEDDED = 3  # a person id this long is looked for inside event ids and snapshot refs


class Pseudonymise:
    """The pipeline's pseudonymise stage: raw person ids of door events become pseudonyms.

    Contract: an ``AccessEvent`` with a ``raw_person`` leaves with ``person`` (and, during a
    key rotation, ``person_previous``) set and ``raw_person`` empty; an event id that embeds
    the raw id (``MIN_EMBEDDED`` characters or more) becomes a keyed token and such a
    snapshot reference is dropped (counted in ``snapshots_dropped``). Every other item passes
    untouched. Pure: the raw id is used for the HMAC calls and the containment checks only.
    """

    name = "pseudonymise"

    def __init__(self, names: Pseudonymiser) -> None:
        self.names = names
        self.snapshots_dropped = 0

    def __call__(self, item: Item) -> Item | None:
        if not isinstance(item, AccessEvent) or not item.raw_person:
            return item
        raw = item.raw_person
        pseudonyms = self.names.pseudonyms(raw)
        event_id, ref = item.event_id, item.snapshot_ref
        if len(raw) >= MIN_EMBEDDED:
            if raw in event_id:
                event_id = self.names.token(event_id, "event_id")
            if raw in ref:
                ref = ""
                self.snapshots_dropped += 1
        return dataclasses.replace(
            item,
            raw_person="",
            person=pseudonyms[0],
            person_previous=pseudonyms[1] if len(pseudonyms) > 1 else "",
            event_id=event_id,
            snapshot_ref=ref,
        )
