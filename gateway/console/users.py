"""Staff console accounts: roles, the users file, password hashing and verification.

Contract:
- Three roles; ``allowed(role, area)`` says what each may open, and refuses anything else
  (an unknown role or area included):

  ============  =====  =========  =====
  area          guard  installer  admin
  ============  =====  =========  =====
  duty          yes    yes        yes
  status        yes    yes        yes
  devices       no     yes        yes
  commission    no     yes        yes
  reports       no     yes        yes
  welfare       yes    yes        yes
  users         no     no         yes
  ============  =====  =========  =====

- A name is 1 to 32 ASCII letters, digits, '.', '_' or '-', starting with a letter or a digit
  (so it never reads as a command-line option). Names are case-insensitive: kept in lower
  case, and every lookup folds what was typed (a phone capitalises the first letter). Not any
  Unicode letter: Unicode has look-alikes and several spellings of one word (full-width
  letters, composed and decomposed accents) that would give two accounts the same look in an
  audit. The person's own name, in any script, goes in ``display`` (1 to 64 printable
  characters, no blanks around them).
- A password has 8 to 1024 characters once NFKC-normalised; it is normalised before hashing and
  before every check (NIST SP 800-63B §5.1.1.2), so a password typed with another input method
  (full-width letters) still matches. It is kept only as an argon2id hash, m=19 MiB, t=2, p=1:
  the first of the OWASP Password Storage Cheat Sheet's argon2id settings (a median of 23 ms a
  check on a 2-core x86 server; more on a Raspberry Pi). No ``User`` repr shows the hash.
- ``verify`` does the same work for a name that has no account (or cannot be one) as for a
  name that has: it checks the password against a dummy hash made with the same parameters, so
  its time does not tell which names exist. A success against a hash made with other parameters
  rehashes the password and sets ``needs_save``; the caller saves.
- ``averify`` runs ``verify`` in a worker thread, at most ``concurrency`` at once: each check
  holds m of memory while it runs, and the service unit caps the daemon at 256 MiB.
- The users file is YAML, ``users: [{name, role, display?, hash}]``. A missing file is no
  accounts. A file readable by group or others is refused like a secret file of the config
  (``gateway.config.base.private_file``); an unreadable or malformed file raises ``ConfigError``
  naming the file and each problem.
- ``save`` replaces the file atomically, mode 0600, owned like the file it replaces or its
  folder (``gateway.core.files.replace_file``), and refuses when the file changed on disk since
  it was read, so it never overwrites a change it has not seen.
- The daemon notices a change with ``stale(path)`` (one ``stat``), loads the file again, and
  signs out the names ``new.differs(old)`` returns: a changed password, role or display, or an
  account removed.
"""

import asyncio
import functools
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Literal

import yaml
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import AfterValidator, Field, ValidationError

from gateway.config.base import Model, private_file
from gateway.config.loader import error_lines, read_yaml
from gateway.core.errors import ConfigError, GatewayError
from gateway.core.files import FileStamp, replace_file, stamp

Role = Literal["guard", "installer", "admin"]
Area = Literal["duty", "devices", "commission", "status", "reports", "welfare", "users"]
ROLES: tuple[Role, ...] = ("guard", "installer", "admin")
_AREAS: dict[str, frozenset[str]] = {
    "guard": frozenset({"duty", "status", "welfare"}),
    "installer": frozenset({"duty", "status", "devices", "commission", "reports", "welfare"}),
    "admin": frozenset({"duty", "status", "devices", "commission", "reports", "welfare", "users"}),
}

DEFAULT_USERS_FILE = Path("/var/lib/cgw/users.yaml")  # the config's console.users_file default
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# OWASP: argon2id, m=19 MiB, t=2, p=1; p=1 keeps one check on one core of the Pi
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
CONCURRENCY = 2  # checks at once: 2 x 19 MiB at most

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_NAME_RULE = "1 to 32 ASCII letters, digits, '.', '_' or '-', starting with a letter or a digit"
_HEADER = "# Staff console accounts, written by 'cgw users'. Keep it mode 0600: it holds hashes.\n"


def allowed(role: str, area: str) -> bool:
    """Whether ``role`` may open ``area`` (the table above); False for anything unknown."""
    return area in _AREAS.get(role, frozenset())


def fold(name: str) -> str | None:
    """``name`` as an account keeps it (lower case), or None if no account can have it."""
    return name.lower() if _NAME.fullmatch(name) else None


class UserError(GatewayError):
    """A change to the accounts that cannot be made; the message says why."""


def _name(value: str) -> str:
    folded = fold(value)
    if folded is None:
        raise ValueError(f"{value!r}: {_NAME_RULE}")
    return folded


def _display(value: str) -> str:
    if not 1 <= len(value) <= 64 or not value.isprintable() or value != value.strip():
        raise ValueError(f"{value!r}: 1 to 64 printable characters, no blanks around them")
    return value


def _hash(value: str) -> str:
    try:
        extract_parameters(value)
    except InvalidHashError:
        raise ValueError("not an argon2 hash; set the password with 'cgw users passwd'") from None
    return value


class User(Model):
    """One account. Its repr leaves the hash out."""

    name: Annotated[str, AfterValidator(_name)] = Field(description="Sign-in name")
    role: Role = Field(description="guard, installer or admin")
    display: Annotated[str, AfterValidator(_display)] | None = Field(
        None, description="The person's name, shown in audits"
    )
    hash: Annotated[str, AfterValidator(_hash)] = Field(
        repr=False, description="argon2 hash of the password"
    )


class _File(Model):
    users: list[User] = Field(default_factory=list)


def _secret(password: str) -> bytes:
    # surrogatepass: a form field decoded with errors must not crash the check
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


def _new_secret(password: str) -> bytes:
    size = len(unicodedata.normalize("NFKC", password))
    if size < MIN_PASSWORD:
        raise UserError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if size > MAX_PASSWORD:
        raise UserError(f"the password is too long: at most {MAX_PASSWORD} characters")
    return _secret(password)


class Users:
    """The accounts of one users file; names are unique once folded."""

    def __init__(
        self,
        users: Iterable[User] = (),
        *,
        hasher: PasswordHasher = HASHER,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._users = {u.name: u for u in users}
        self._hasher = hasher
        self._slots = asyncio.Semaphore(concurrency)
        self._lock = threading.Lock()  # a rehash in a worker thread against a change here
        self.stamp: FileStamp | None = None  # the file's version read or saved; None: no file
        self.needs_save = False  # a hash was upgraded since the last load or save

    @classmethod
    def load(cls, path: Path, *, hasher: PasswordHasher = HASHER) -> "Users":
        """The accounts in ``path``; none if there is no file. Raises ``ConfigError``."""
        try:
            found = stamp(path)  # taken first: a change while reading shows as stale, never lost
            if found is None:
                return cls(hasher=hasher)
            private_file(path)
        except ValueError as exc:
            raise ConfigError([str(exc)]) from exc
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        raw = read_yaml(path)
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError([f"{path}: a users file is a mapping with a 'users' list"])
        try:
            doc = _File.model_validate(raw or {})
        except ValidationError as exc:
            raise ConfigError(error_lines(exc, prefix=f"{path}: ")) from exc
        first: dict[str, int] = {}
        twice = [
            f"{path}: users[{i}].name: {u.name!r} again (users[{first[u.name]}] has it)"
            for i, u in enumerate(doc.users)
            if first.setdefault(u.name, i) != i
        ]
        if twice:
            raise ConfigError(twice)
        users = cls(doc.users, hasher=hasher)
        users.stamp = found
        return users

    def save(self, path: Path) -> None:
        """Replace ``path`` with these accounts; raises ``UserError`` or ``OSError``."""
        if self.stale(path):
            raise UserError(f"{path} changed since it was read; nothing written, try again")
        doc = {"users": [user.model_dump(exclude_none=True) for user in self]}
        text = _HEADER + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
        self.stamp = replace_file(path, text.encode(), 0o600)
        self.needs_save = False

    def stale(self, path: Path) -> bool:
        """Whether the file at ``path`` is not the version these accounts were read from."""
        return stamp(path) != self.stamp

    def differs(self, old: "Users") -> set[str]:
        """The names of ``old`` whose account is changed or gone here: sign them out."""
        return {name for name, user in old._users.items() if self._users.get(name) != user}

    def names(self) -> list[str]:
        """Every account's name, sorted."""
        return sorted(self._users)

    def __iter__(self) -> Iterator[User]:
        """The accounts, by name."""
        return iter([self._users[name] for name in self.names()])

    def get(self, name: str) -> User | None:
        """The account ``name`` (any case), or None."""
        key = fold(name)
        return None if key is None else self._users.get(key)

    def add(self, name: str, role: Role, password: str, display: str | None = None) -> User:
        """A new account; raises ``UserError`` (bad name, taken, bad password, bad display)."""
        key = fold(name)
        if key is None:
            raise UserError(f"bad user name {name!r}: {_NAME_RULE}")
        if key in self._users:
            raise UserError(f"user {key} exists")
        return self._put(key, role, password, display)

    def set_password(self, name: str, password: str) -> User:
        """Give ``name`` a new password; raises ``UserError`` (no such user, bad password)."""
        old = self._existing(name)
        return self._put(old.name, old.role, password, old.display)

    def remove(self, name: str) -> User:
        """Remove the account ``name``; raises ``UserError`` if there is none."""
        user = self._existing(name)
        with self._lock:
            del self._users[user.name]
        return user

    def verify(self, name: str, password: str) -> User | None:
        """The account if ``password`` is its password, else None; the same work either way.

        CPU-heavy (one argon2 check): on the event loop, use ``averify``.
        """
        dummy = self._dummy  # made on the first check, whatever the name: no first-time tell
        key = fold(name)
        user = None if key is None else self._users.get(key)
        secret = _secret(password)
        try:
            self._hasher.verify(dummy if user is None else user.hash, secret)
        except (VerificationError, InvalidHashError):
            return None
        if user is None:  # nobody knows the dummy's password; still, never a sign-in
            return None
        if self._hasher.check_needs_rehash(user.hash):
            return self._rehash(user, secret)
        return user

    async def averify(self, name: str, password: str) -> User | None:
        """``verify`` in a worker thread, so the event loop never waits for argon2."""
        async with self._slots:
            return await asyncio.to_thread(self.verify, name, password)

    @functools.cached_property
    def _dummy(self) -> str:
        return self._hasher.hash(secrets.token_bytes(16))

    def _existing(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        return user

    def _put(self, name: str, role: Role, password: str, display: str | None) -> User:
        secret = _new_secret(password)
        try:
            user = User(name=name, role=role, display=display, hash=self._hasher.hash(secret))
        except ValidationError as exc:
            raise UserError("; ".join(error_lines(exc))) from exc
        with self._lock:
            self._users[name] = user
        return user

    def _rehash(self, user: User, secret: bytes) -> User:
        new = user.model_copy(update={"hash": self._hasher.hash(secret)})
        with self._lock:
            if self._users.get(user.name) is not user:
                return user  # changed meanwhile (a new password, a removal): that one stands
            self._users[user.name] = new
            self.needs_save = True
        return new
