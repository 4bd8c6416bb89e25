"""Console sessions (expiry, LRU cap, CSRF) and the sign-in slow-down, on a hand-driven clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from gateway.console.sessions import LoginThrottle, Sessions, TooManyAttempts, check_csrf
from gateway.console.users import User, Users
from gateway.core.clock import ManualClock
from tests.support.accounts import FAST

PASSWORD = "correct horse"


def user(name: str = "wang") -> User:
    return User(name=name, role="guard", display="王伟", hash=FAST.hash(PASSWORD))


# -- sessions -----------------------------------------------------------------------------------


def test_a_session_carries_the_account_and_a_csrf_token_of_its_own() -> None:
    sessions = Sessions(ManualClock())
    sid, session = sessions.create(user())
    other_sid, other = sessions.create(user())
    assert len(sid) == 43  # token_urlsafe(32): 256 bits
    assert sid != other_sid
    assert (session.name, session.role, session.display) == ("wang", "guard", "王伟")
    assert len(session.csrf) == 43
    assert session.csrf not in (sid, other.csrf)
    assert sessions.get(sid) is session
    assert sessions.get(other_sid) is other


def test_the_session_id_itself_is_kept_nowhere() -> None:
    sessions = Sessions(ManualClock())
    sid, session = sessions.create(user())
    assert sid not in repr(session)
    assert all(sid.encode() not in key for key in vars_of(sessions))
    assert sessions.get(sid) is session


def vars_of(sessions: Sessions) -> list[bytes]:
    """Every key of the table of open sessions (white box: what a memory dump would show)."""
    return list(sessions._open)


@pytest.mark.parametrize("sid", ["", "x", "王伟", "\udcff", "a" * 10_000])
def test_an_unknown_id_is_no_session(sid: str) -> None:
    sessions = Sessions(ManualClock())
    sessions.create(user())
    assert sessions.get(sid) is None
    assert not sessions.drop(sid)


def test_a_session_ends_after_idle_seconds_without_a_request() -> None:
    clock = ManualClock()
    sessions = Sessions(clock, idle=900.0)
    sid, _ = sessions.create(user())
    clock.advance(900.0)
    assert sessions.get(sid) is not None  # seen: the idle time starts again
    clock.advance(900.0)
    assert sessions.get(sid) is not None
    clock.advance(900.5)
    assert sessions.get(sid) is None
    assert len(sessions) == 0


def test_a_session_ends_at_its_absolute_lifetime_however_busy() -> None:
    clock = ManualClock()
    sessions = Sessions(clock, idle=900.0, absolute=43_200.0)
    sid, session = sessions.create(user())
    for _ in range(72):  # a request every 10 minutes for 12 hours
        clock.advance(600.0)
        assert sessions.get(sid) is session
    clock.advance(1.0)
    assert sessions.get(sid) is None


def test_at_the_cap_the_least_recently_used_session_goes() -> None:
    clock = ManualClock()
    sessions = Sessions(clock, cap=3)
    first, _ = sessions.create(user("a"))
    second, _ = sessions.create(user("b"))
    third, _ = sessions.create(user("c"))
    clock.advance(1.0)
    assert sessions.get(first) is not None  # used: now the most recent
    fourth, _ = sessions.create(user("d"))
    assert len(sessions) == 3
    assert sessions.get(second) is None
    assert all(sessions.get(s) is not None for s in (first, third, fourth))


def test_ended_sessions_make_room_before_any_live_one_is_pushed_out() -> None:
    clock = ManualClock()
    sessions = Sessions(clock, idle=900.0, cap=3)
    sessions.create(user("a"))
    sessions.create(user("b"))
    clock.advance(600.0)
    live, _ = sessions.create(user("c"))
    clock.advance(600.0)  # a and b are idle for 1200 s, c for 600 s
    sessions.create(user("d"))
    assert len(sessions) == 2
    assert sessions.get(live) is not None


def test_sign_out_and_signing_a_user_out_everywhere() -> None:
    sessions = Sessions(ManualClock())
    phone, _ = sessions.create(user("wang"))
    desk, _ = sessions.create(user("wang"))
    other, _ = sessions.create(user("li"))
    assert sessions.drop(phone)
    assert not sessions.drop(phone)
    assert sessions.get(phone) is None
    assert sessions.drop_user("wang") == 1
    assert sessions.get(desk) is None
    assert sessions.get(other) is not None
    assert sessions.drop_user("wang") == 0


def test_csrf_tokens_are_compared_whole() -> None:
    sessions = Sessions(ManualClock())
    _, mine = sessions.create(user())
    _, theirs = sessions.create(user())
    assert check_csrf(mine, mine.csrf)
    assert not check_csrf(mine, theirs.csrf)
    assert not check_csrf(mine, mine.csrf[:-1])
    assert not check_csrf(mine, "")
    assert not check_csrf(mine, "王" + mine.csrf[1:])  # no TypeError on non-ASCII input
    assert not check_csrf(mine, "\udcff")


# -- the sign-in slow-down ----------------------------------------------------------------------


class Sleeps:
    """A ``sleep`` that records each delay; blocks until ``release`` once ``hold`` is set."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hold = False
        self.released = asyncio.Event()
        self._more = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self._more.set()
        if self.hold:
            await self.released.wait()

    async def until(self, count: int) -> None:
        """Until ``count`` delays have begun."""
        while len(self.delays) < count:
            self._more.clear()
            await self._more.wait()


def verdict(ok: bool) -> Callable[[], Awaitable[str | None]]:
    async def verify() -> str | None:
        return "user" if ok else None

    return verify


async def fail(throttle: LoginThrottle, name: str, times: int = 1) -> None:
    for _ in range(times):
        assert await throttle.check(name, verdict(False)) is None


def test_the_delay_is_none_for_3_failures_then_doubles_from_1_s_up_to_16_s() -> None:
    throttle = LoginThrottle(ManualClock())
    assert [throttle.delay(n) for n in range(1, 11)] == [0, 0, 0, 1, 2, 4, 8, 16, 16, 16]


async def test_failures_are_answered_after_growing_capped_delays() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(ManualClock(), sleep=sleeps)
    await fail(throttle, "wang", 10)
    assert sleeps.delays == [1, 2, 4, 8, 16, 16, 16]
    await fail(throttle, "li", 4)  # another account has its own count
    assert sleeps.delays[7:] == [1]
    assert (throttle.logins_failed, throttle.logins_ok, throttle.throttled) == (14, 0, 0)


async def test_the_right_password_is_answered_at_once_after_20_failures_by_a_neighbour() -> None:
    users = Users(hasher=FAST)
    users.add("wang", "guard", PASSWORD)
    sleeps = Sleeps()
    sleeps.hold = True  # the neighbour's failures stay waiting out their delays
    throttle = LoginThrottle(ManualClock(), sleep=sleeps, waiting=32)

    async def attempt(password: str) -> User | None:
        return await throttle.check("wang", lambda: users.averify("wang", password))

    neighbour = [asyncio.ensure_future(attempt(f"guess {i:04d}")) for i in range(20)]
    await sleeps.until(17)  # 3 answered at once, 17 waiting
    answer = await asyncio.wait_for(attempt(PASSWORD), timeout=5)
    assert answer is not None
    assert answer.name == "wang"
    assert len(sleeps.delays) == 17  # the right one did not wait
    sleeps.released.set()
    assert await asyncio.gather(*neighbour) == [None] * 20
    assert (throttle.logins_ok, throttle.logins_failed) == (1, 20)


async def test_a_success_or_15_quiet_minutes_forget_the_failures() -> None:
    clock = ManualClock()
    sleeps = Sleeps()
    throttle = LoginThrottle(clock, sleep=sleeps)
    await fail(throttle, "wang", 5)
    assert sleeps.delays == [1, 2]
    assert await throttle.check("wang", verdict(True)) == "user"
    await fail(throttle, "wang", 4)
    assert sleeps.delays == [1, 2, 1]
    clock.advance(899.0)
    await fail(throttle, "wang")
    assert sleeps.delays[-1] == 2  # not quiet long enough
    clock.advance(900.0)
    await fail(throttle, "wang", 4)
    assert sleeps.delays == [1, 2, 1, 2, 1]


async def test_names_are_counted_as_accounts_fold_them() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(ManualClock(), sleep=sleeps)
    for name in ("wang", "Wang", "WANG", "wAng"):
        await fail(throttle, name)
    assert sleeps.delays == [1]
    for name in ("王伟", "two words", "", "x" * 100):  # no account can have these: one bucket
        await fail(throttle, name)
    assert sleeps.delays == [1, 1]


async def test_checks_on_one_account_run_one_at_a_time_and_accounts_in_parallel() -> None:
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    both = 0

    def verify(name: str) -> Callable[[], Awaitable[str | None]]:
        async def check() -> str | None:
            nonlocal both
            running[name] += 1
            most[name] = max(most[name], running[name])
            both = max(both, sum(1 for n in running if running[n]))
            await asyncio.sleep(0.01)
            running[name] -= 1
            return None

        return check

    throttle = LoginThrottle(ManualClock(), sleep=Sleeps())
    await asyncio.gather(*(throttle.check(name, verify(name)) for name in ["wang", "li"] * 5))
    assert most == {"wang": 1, "li": 1}
    assert both == 2


async def test_beyond_16_failures_waiting_a_failure_is_answered_at_once_as_too_many() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(ManualClock(), sleep=sleeps)
    for i in range(17):
        await fail(throttle, f"user{i}", 3)  # the free ones: the next failure waits 1 s
    sleeps.hold = True
    waiting = [asyncio.ensure_future(fail(throttle, f"user{i}")) for i in range(16)]
    await sleeps.until(16)
    assert throttle.waiting == 16
    with pytest.raises(TooManyAttempts, match="too many sign-in attempts"):
        await asyncio.wait_for(throttle.check("user16", verdict(False)), timeout=5)
    assert throttle.throttled == 1
    assert await throttle.check("user16", verdict(True)) == "user"  # success is never refused
    sleeps.released.set()
    await asyncio.gather(*waiting)
    assert throttle.waiting == 0
    assert (throttle.logins_ok, throttle.logins_failed) == (1, 17 * 3 + 17)


async def test_memory_stays_bounded_by_the_names_tracked() -> None:
    sleeps = Sleeps()
    throttle = LoginThrottle(ManualClock(), sleep=sleeps, tracked=64)
    for i in range(1000):
        await fail(throttle, f"name{i}", 4)
    assert len(throttle) == 64
    await fail(throttle, "name999")  # the most recent are remembered: its 5th failure
    assert sleeps.delays[-1] == 2
    await fail(throttle, "name0", 4)  # the oldest were forgotten: its 4th failure again
    assert sleeps.delays[-1] == 1
    assert len(throttle) == 64
    for i in range(1000):
        assert await throttle.check(f"name{i}", verdict(True)) == "user"
    assert len(throttle) == 0  # nothing to remember after a success


async def test_an_account_with_nothing_to_remember_is_forgotten_with_its_lock() -> None:
    throttle = LoginThrottle(ManualClock(), sleep=Sleeps())
    await throttle.check("wang", verdict(True))
    assert len(throttle) == 0
    await fail(throttle, "wang")
    assert len(throttle) == 1
    assert all(a.lock is None for a in throttle._accounts.values())  # no attempt running


async def test_a_cancelled_check_leaves_nothing_held() -> None:
    throttle = LoginThrottle(ManualClock(), sleep=Sleeps())
    started = asyncio.Event()

    async def hang() -> str | None:
        started.set()
        await asyncio.Event().wait()
        return None

    task = asyncio.ensure_future(throttle.check("wang", hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(throttle) == 0
    assert await asyncio.wait_for(throttle.check("wang", verdict(True)), timeout=1) == "user"
