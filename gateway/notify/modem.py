"""Staff channels over a local 4G modem: SMS and voice calls that need no internet.

Contract:

- ``Modem`` owns one serial port. All of its serial I/O (open, checks, SMS, calls) runs in its
  single worker thread, one job after another, so two channels on one modem never interleave
  AT commands and the event loop never blocks on the port. An ``await`` on a job is bounded:
  every AT command inside has a timeout (``gateway.notify.gsm``), and the await itself is cut
  off after the job's worst case plus a margin, should the library fail to keep its own.
- A job that fails with ``ModemError`` resets the session (port closed, reopened by the next
  job) and is reported: ``state()`` holds the reason until a check or send succeeds, the
  ``resets`` count grows, and a WARNING is logged when the modem *enters* the failed state,
  an INFO line when it recovers. A modem that is missing (unplugged, wrong port) is the same:
  every check tries to reopen it.
- ``run(report)`` checks the modem every ``poll`` s (SIM, registration, signal, operator) and
  hands each ``ModemState`` to ``report`` on the loop; it runs until cancelled.
- ``ModemChannel.send`` has ``Channel.send``'s contract: it never raises for a message that was
  not delivered; it returns one ``Attempt`` per try; a try goes to the recipients not reached
  yet; ok when every recipient got its SMS and answered its call. The SMS is the title and
  body, cut to ``max_parts`` parts. Logs and attempts name recipients by name, never by number,
  and never hold the text.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from aiolimiter import AsyncLimiter

from gateway.config.base import read_secret
from gateway.config.notify import ModemChannelConfig, RecipientConfig
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock, SystemClock
from gateway.core.snapshots import ModemState
from gateway.notify.channel import Attempt, Severity
from gateway.notify.gsm import ModemError, Session, fit

__all__ = ["Modem", "ModemChannel"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MARGIN = 15.0  # seconds beyond a job's own timeouts before its await gives up
_OPEN_COMMANDS = 25  # AT commands an open takes at most (python-gsmmodem-new 0.13 connect)


class Modem:
    """One modem on one port, shared by the channels that name the port."""

    def __init__(self, config: ModemChannelConfig, *, clock: Clock | None = None) -> None:
        self.port = str(config.port)
        self._config = config
        self._clock = clock or SystemClock()
        pin = read_secret(config.pin_file) if config.pin_file is not None else None
        self._session = Session(self.port, config.baudrate, pin=pin, timeout=config.command_timeout)
        self._open = False  # touched only in the worker thread
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"modem-{config.id}")
        self._stop = threading.Event()  # ends a call in progress when the gateway stops
        self._state = ModemState(self.port, problem="not checked yet")

    def state(self) -> ModemState:
        """The modem as last seen."""
        return self._state

    # -- jobs (each runs whole in the worker thread) ----------------------------------------

    async def _job(self, work: Callable[[], _T], budget: float) -> _T:
        """Run ``work`` in the worker thread, opening the session first; reset on a fault."""
        loop = asyncio.get_running_loop()
        open_budget = 0.0 if self._open else _OPEN_COMMANDS * self._config.command_timeout
        try:
            async with asyncio.timeout(budget + open_budget + _MARGIN):
                return await loop.run_in_executor(self._pool, self._guarded, work)
        except TimeoutError:
            self._failed(f"the modem job took longer than {budget + open_budget:g} s")
            raise ModemError("the modem did not finish in time") from None
        except ModemError as exc:
            self._failed(str(exc))
            raise

    def _guarded(self, work: Callable[[], _T]) -> _T:
        if not self._open:
            self._session.open()
            self._open = True
        try:
            return work()
        except ModemError:
            self._session.close()  # a reset: the next job opens it again
            self._open = False
            raise

    def _failed(self, reason: str) -> None:
        old = self._state
        self._state = replace(
            old, open=False, problem=reason, resets=old.resets + 1, checked=self._clock.wall()
        )
        if old.ok or old.problem == "not checked yet":
            log.warning("modem %s: %s", self.port, reason, extra={"port": self.port})

    def _succeeded(self, new: ModemState) -> None:
        old = self._state
        self._state = new
        if new.ok and not old.ok and old.problem != "not checked yet":
            log.info("modem %s: can send again", self.port, extra={"port": self.port})
        elif not new.ok and (old.ok or old.problem == "not checked yet"):
            log.warning("modem %s: %s", self.port, new.problem, extra={"port": self.port})

    async def check(self) -> ModemState:
        """Read SIM, registration, signal and operator now; the new state."""
        try:
            reading = await self._job(self._session.check, 5 * self._config.command_timeout)
        except ModemError:
            return self._state
        problem = (
            f"SIM {reading.sim}"
            if reading.sim != "ready"
            else ""
            if reading.registered
            else "not registered on the mobile network"
        )
        self._succeeded(
            replace(
                self._state,
                open=True,
                sim=reading.sim,
                registered=reading.registered,
                csq=reading.csq,
                operator=reading.operator,
                checked=self._clock.wall(),
                problem=problem,
            )
        )
        return self._state

    async def sms(self, number: str, text: str, max_parts: int) -> str | None:
        """Send an SMS; None once the network accepted every part, else why not."""
        text = fit(text, max_parts)
        budget = max_parts * (self._config.command_timeout + self._config.sms_timeout)
        try:
            await self._job(
                lambda: self._session.sms(number, text, self._config.sms_timeout), budget
            )
        except ModemError as exc:
            return str(exc)
        self._sent()
        return None

    async def call(self, number: str, ring: float) -> str | None:
        """Ring ``number``; None if answered, else why not (busy, not answered, a fault)."""
        budget = ring + 4 * self._config.command_timeout
        try:
            reason = await self._job(lambda: self._session.call(number, ring, self._stop), budget)
        except ModemError as exc:
            return str(exc)
        if reason is None:
            self._sent()
        return reason

    def _sent(self) -> None:
        self._state = replace(self._state, last_send=self._clock.wall())

    async def run(self, report: Callable[[ModemState], None]) -> None:
        """Check every ``poll`` s and report each state, until cancelled."""
        while True:
            report(await self.check())
            await asyncio.sleep(self._config.poll)

    async def aclose(self) -> None:
        """End a call in progress, wait for the worker, close the port. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()

        def close() -> None:
            self._session.close()
            self._open = False

        await asyncio.to_thread(self._pool.submit(close).result)
        await asyncio.to_thread(self._pool.shutdown, wait=True)


@dataclass(frozen=True, slots=True)
class _Step:
    recipient: RecipientConfig
    how: str  # sms | call


class ModemChannel:
    """One ``modem`` channel: its recipients, reached through a shared ``Modem``."""

    def __init__(
        self,
        config: ModemChannelConfig,
        modem: Modem,
        *,
        clock: Clock | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 10.0,
    ) -> None:
        self.id = config.id
        self.fallback = config.fallback
        self.modem = modem
        self._config = config
        self._clock = clock or SystemClock()
        self._backoff = (backoff_base, backoff_cap)
        self._limiter = AsyncLimiter(1, 60.0 / config.rate)

    async def send(self, title: str, body: str, *, severity: Severity) -> list[Attempt]:
        """SMS and calls to every recipient; ``severity`` does not change them."""
        text = f"{self._config.title_prefix}{title}\n{body}"
        recipients = self._config.recipients
        pending = [_Step(r, how) for r in recipients for how in ("sms", "call") if getattr(r, how)]
        backoff = Backoff(*self._backoff)
        tries = self._config.retries + 1
        attempts: list[Attempt] = []
        for number in range(1, tries + 1):
            await self._limiter.acquire()
            started, t0 = self._clock.wall(), self._clock.mono()
            failed: dict[_Step, str] = {}
            for step in pending:  # one after another: the modem does one thing at a time
                if step.how == "sms":
                    reason = await self.modem.sms(
                        step.recipient.phone, text, self._config.max_parts
                    )
                else:
                    reason = await self.modem.call(step.recipient.phone, self._config.ring)
                if reason is not None:
                    failed[step] = reason
            attempts.append(
                Attempt(
                    channel=self.id,
                    number=number,
                    started=started,
                    duration=self._clock.mono() - t0,
                    ok=not failed,
                    error="; ".join(
                        f"{s.recipient.name} ({s.how}): {e}" for s, e in failed.items()
                    ),
                )
            )
            if not failed:
                break
            pending = list(failed)
            if number < tries:
                log.info(
                    "notify %s: try %d of %d failed: %s",
                    self.id,
                    number,
                    tries,
                    attempts[-1].error,
                    extra={"channel": self.id},
                )
                await asyncio.sleep(backoff.next())
            else:
                log.warning(
                    "notify %s: not delivered after %d tries: %s",
                    self.id,
                    tries,
                    attempts[-1].error,
                    extra={"channel": self.id},
                )
        return attempts

    async def aclose(self) -> None:
        """Nothing of its own: the notifier closes the shared modem."""
