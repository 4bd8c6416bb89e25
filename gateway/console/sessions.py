"""Signed-in sessions of the staff console, their CSRF tokens, and the sign-in slow-down.

Contract, sessions:
- A session id is ``secrets.token_urlsafe(32)`` (256 random bits), new at every sign-in (no
  fixation). Only its SHA-256 is kept: memory (a core dump, a swapped page) holds no cookie
  that signs anybody in, and a lookup's timing depends on a digest no client can choose.
- A session ends ``idle`` seconds after its last request, ``absolute`` seconds after its
  sign-in whatever its use, on sign-out (``drop``), when its user is signed out everywhere
  (``drop_user``: a new password, another role, an account removed), or when ``cap`` sessions
  are open and another starts: the least recently used one goes. Times are monotonic.
- Each session has its own CSRF token (a synchronizer token, as long as the id); ``check_csrf``
  compares in constant time (``hmac.compare_digest``).

Contract, ``LoginThrottle`` (per account name, folded as ``users.fold`` does; every name that
cannot be an account shares one bucket):
- A correct password is answered at once: a failure delays only failures, never a success, so
  nobody can lock a neighbour out by typing wrong passwords for their name.
- A wrong one is answered after a delay that grows with the account's recent failures: none
  for the first ``free`` (3), then ``first`` (1 s) doubling up to ``longest`` (16 s). Failures
  are forgotten after ``forget`` (15 min) without one, and at a success.
- Checks on one account run one at a time (an ``asyncio.Lock`` made when an attempt comes and
  dropped when none is left), so parallel guesses on one account cost one argon2 check each,
  in turn. The delay is served after the lock is released: a correct password waits for the
  checks queued before it, never for another attempt's delay.
- At most ``waiting`` (16) failures serve their delay at once; a failure beyond that is
  answered at once with ``TooManyAttempts`` (HTTP 429 for the web page). It tells the guesser
  no more than parallel attempts tell anyway: a wrong password is the answer that is not a
  success.
- At most ``tracked`` (1024) names are remembered; the one tried least recently that has no
  attempt running is forgotten first.
- Counters for metrics: ``logins_ok``, ``logins_failed`` (those answered with
  ``TooManyAttempts`` included) and ``throttled`` (answered with ``TooManyAttempts``).
- The web page stays short::

      try:
          user = await throttle.check(name, lambda: users.averify(name, password))
      except TooManyAttempts:
          ...  # 429
      if user is None:
          ...  # 401, "wrong name or password"
      sid, session = sessions.create(user)
"""

import asyncio
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.console.users import Role, User, fold
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError

T = TypeVar("T")
_INVALID = ""  # the bucket of every name that cannot be an account's


@dataclass(slots=True)
class Session:
    """One signed-in session; ``created`` and ``last_seen`` are monotonic seconds."""

    name: str
    role: Role
    display: str | None
    csrf: str
    created: float
    last_seen: float


def _digest(sid: str) -> bytes:
    # "replace": a cookie is whatever a client sends; a real id is ASCII without '?'
    return hashlib.sha256(sid.encode("utf-8", "replace")).digest()


def check_csrf(session: Session, token: str) -> bool:
    """Whether ``token`` is the session's CSRF token; constant time."""
    return hmac.compare_digest(session.csrf.encode(), token.encode("utf-8", "replace"))


class Sessions:
    """The open sessions, by the SHA-256 of their id, least recently used first."""

    def __init__(
        self, clock: Clock, idle: float = 900.0, absolute: float = 43_200.0, cap: int = 256
    ) -> None:
        self._clock = clock
        self._idle = idle
        self._absolute = absolute
        self._cap = cap
        self._open: OrderedDict[bytes, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def create(self, user: User) -> tuple[str, Session]:
        """A new session for ``user``: its id (the cookie's value, kept nowhere) and itself."""
        now = self._clock.mono()
        while self._open:  # the oldest first: ended ones go before anybody is pushed out
            oldest = next(iter(self._open.values()))
            if not self._ended(oldest, now) and len(self._open) < self._cap:
                break
            self._open.popitem(last=False)
        sid = secrets.token_urlsafe(32)
        session = Session(user.name, user.role, user.display, secrets.token_urlsafe(32), now, now)
        self._open[_digest(sid)] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        """The session ``sid`` names, now seen; None if unknown or ended (then it is dropped)."""
        key = _digest(sid)
        session = self._open.get(key)
        if session is None:
            return None
        now = self._clock.mono()
        if self._ended(session, now):
            del self._open[key]
            return None
        session.last_seen = now
        self._open.move_to_end(key)
        return session

    def drop(self, sid: str) -> bool:
        """End the session ``sid`` (sign-out); whether there was one."""
        return self._open.pop(_digest(sid), None) is not None

    def drop_user(self, name: str) -> int:
        """End every session of the account ``name``; how many there were."""
        gone = [key for key, s in self._open.items() if s.name == name]
        for key in gone:
            del self._open[key]
        return len(gone)

    def _ended(self, session: Session, now: float) -> bool:
        return now - session.last_seen > self._idle or now - session.created > self._absolute


class TooManyAttempts(GatewayError):
    """Too many failed sign-ins are waiting out their delay; answer HTTP 429 at once."""


@dataclass(slots=True)
class _Account:
    failures: int = 0
    last_failure: float = 0.0  # monotonic
    busy: int = 0  # attempts holding or waiting for the lock
    lock: asyncio.Lock | None = None  # exists while busy


class LoginThrottle:
    """Per-account slow-down of failed sign-ins, never a lockout (the module's contract)."""

    def __init__(
        self,
        clock: Clock,
        *,
        free: int = 3,
        first: float = 1.0,
        longest: float = 16.0,
        forget: float = 900.0,
        waiting: int = 16,
        tracked: int = 1024,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._free, self._first, self._longest = free, first, longest
        self._forget = forget
        self._waiting_cap = waiting
        self._tracked = tracked
        self._sleep = sleep
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self.waiting = 0  # failures serving their delay now
        self.logins_ok = 0
        self.logins_failed = 0
        self.throttled = 0

    def __len__(self) -> int:
        """How many names are remembered."""
        return len(self._accounts)

    def delay(self, failures: int) -> float:
        """Seconds before the answer to an account's ``failures``-th recent failure."""
        if failures <= self._free:
            return 0.0
        return min(self._first * 2.0 ** (failures - self._free - 1), self._longest)

    async def check(self, name: str, verify: Callable[[], Awaitable[T | None]]) -> T | None:
        """Run ``verify`` for ``name``'s account in turn; its result, a failure after its delay.

        Raises:
            TooManyAttempts: the check failed and too many failures are waiting already.
        """
        key = fold(name) or _INVALID
        account, lock = self._enter(key)
        try:
            async with lock:
                result = await verify()
                now = self._clock.mono()
                if result is not None:
                    self.logins_ok += 1
                    account.failures = 0
                    return result
                self.logins_failed += 1
                if now - account.last_failure >= self._forget:
                    account.failures = 0
                account.failures += 1
                account.last_failure = now
                pause = self.delay(account.failures)
        finally:
            self._leave(key, account)
        if pause > 0:
            if self.waiting >= self._waiting_cap:
                self.throttled += 1
                raise TooManyAttempts("too many sign-in attempts; try again in a minute")
            self.waiting += 1
            try:
                await self._sleep(pause)
            finally:
                self.waiting -= 1
        return None

    def _enter(self, key: str) -> tuple[_Account, asyncio.Lock]:
        account = self._accounts.get(key)
        if account is None:
            self._make_room()
            account = self._accounts[key] = _Account()
        self._accounts.move_to_end(key)
        if account.lock is None:
            account.lock = asyncio.Lock()
        account.busy += 1
        return account, account.lock

    def _leave(self, key: str, account: _Account) -> None:
        account.busy -= 1
        if account.busy:
            return
        account.lock = None
        quiet = self._clock.mono() - account.last_failure >= self._forget
        if account.failures == 0 or quiet:
            del self._accounts[key]  # nothing left to remember

    def _make_room(self) -> None:
        if len(self._accounts) < self._tracked:
            return
        for key, account in self._accounts.items():  # least recently tried first
            if not account.busy:
                del self._accounts[key]
                return
        # every name has an attempt running: grow for now, by no more than the attempts
