"""One staff notification channel: rate limit, retries with backoff, every try recorded.

Contract of ``Channel.send``:

- It never raises because a message was not delivered: it returns one ``Attempt`` per try, and
  the last one says whether the message got through. It raises only on cancellation or a bug.
- A try first takes a token from the channel's limiter: at most ``rate`` tries per minute,
  spaced 60/rate s apart (a leaky bucket of one, so no minute ever holds more than ``rate``
  sends; a burst queues). Retries take tokens too, because the service counts them.
- A try sends to every URL of the channel that has not yet accepted the message, concurrently;
  it is ok when all have. A retry never repeats a message to a URL that accepted it.
- A try is bounded by ``timeout``: the send runs in a worker thread the channel owns, with the
  same connect and read timeouts, so a dead peer holds a thread for about ``timeout`` at most.
  A try abandoned by the timeout may still be delivered late; a retry can then duplicate it.
- Between tries the channel waits with capped, jittered exponential backoff (``Backoff``).
- Logs name the channel id and the URL's line number, never a URL, token or message text.

A channel owns a thread pool: use it as an async context manager (or ``await aclose()``), which
waits for sends still running in it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from aiolimiter import AsyncLimiter

from gateway.config.notify import ChannelConfig
from gateway.core.backoff import Backoff
from gateway.core.clock import Clock, SystemClock
from gateway.notify.transport import Target, build

__all__ = ["Attempt", "Channel", "Severity"]

log = logging.getLogger(__name__)

Severity = Literal["critical", "warning", "info"]

# apprise's NotifyType values; the strings keep apprise out of this module's imports.
_NOTIFY_TYPE: dict[Severity, str] = {"critical": "failure", "warning": "warning", "info": "info"}
_THREADS_PER_URL = 4  # concurrent sends per URL before further sends queue for a thread


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one message on one channel."""

    channel: str
    number: int  # 1 for the first try
    started: float  # wall clock, seconds since the epoch
    duration: float  # seconds, monotonic
    ok: bool
    error: str  # why it failed, per URL; "" when ok. Never holds a URL or token.


class Channel:
    """Sends messages to the URLs of one ``ChannelConfig``; concurrent sends share its limiter.

    Building a channel reads its URL file and imports apprise (once per process, about 0.2 s:
    build channels at start-up); a URL apprise cannot use raises ``ConfigError`` naming the
    line, never the URL. ``backoff_base`` is the pause (s) before the first retry, doubling up
    to ``backoff_cap``; ``clock`` stamps the attempts.
    """

    def __init__(
        self,
        config: ChannelConfig,
        *,
        clock: Clock | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 10.0,
    ) -> None:
        self.id = config.id
        self.fallback = config.fallback
        self._config = config
        self._clock = clock or SystemClock()
        self._backoff = (backoff_base, backoff_cap)
        self._targets: list[Target] = build(
            config.id, config.url_file, timeout=config.timeout, verify=config.verify_errcode
        )
        self._limiter = AsyncLimiter(1, 60.0 / config.rate)
        self._pool = ThreadPoolExecutor(
            max_workers=_THREADS_PER_URL * len(self._targets),
            thread_name_prefix=f"notify-{config.id}",
        )

    async def send(self, title: str, body: str, *, severity: Severity) -> list[Attempt]:
        """Deliver ``title``/``body`` to every URL of the channel; one ``Attempt`` per try."""
        title = self._config.title_prefix + title
        notify_type = _NOTIFY_TYPE[severity]
        tries = self._config.retries + 1
        backoff = Backoff(*self._backoff)
        pending = self._targets
        attempts: list[Attempt] = []
        for number in range(1, tries + 1):
            await self._limiter.acquire()
            started, t0 = self._clock.wall(), self._clock.mono()
            errors = await self._try(pending, title, body, notify_type)
            attempt = Attempt(
                channel=self.id,
                number=number,
                started=started,
                duration=self._clock.mono() - t0,
                ok=not errors,
                error="; ".join(f"{t.label}: {e}" for t, e in errors.items()),
            )
            attempts.append(attempt)
            if attempt.ok:
                self._log_delivered(attempt)
                break
            pending = list(errors)
            if number < tries:
                pause = backoff.next()
                log.info(
                    "notify %s: try %d of %d failed, next in %.1f s: %s",
                    self.id,
                    number,
                    tries,
                    pause,
                    attempt.error,
                    extra={"channel": self.id},
                )
                await asyncio.sleep(pause)
            else:
                log.warning(
                    "notify %s: not delivered after %d tries: %s",
                    self.id,
                    tries,
                    attempt.error,
                    extra={"channel": self.id},
                )
        return attempts

    async def _try(
        self, targets: list[Target], title: str, body: str, notify_type: str
    ) -> dict[Target, str]:
        """Send to ``targets`` at once; the ones that failed, with the reason."""
        async with asyncio.TaskGroup() as group:
            tasks = {
                target: group.create_task(
                    self._deliver(target, title, body, notify_type),
                    name=f"notify:{self.id}:{target.label}",
                )
                for target in targets
            }
        reasons = {target: task.result() for target, task in tasks.items()}
        return {target: reason for target, reason in reasons.items() if reason is not None}

    async def _deliver(self, target: Target, title: str, body: str, notify_type: str) -> str | None:
        loop = asyncio.get_running_loop()
        timeout = self._config.timeout
        try:
            async with asyncio.timeout(timeout):
                return await loop.run_in_executor(
                    self._pool, target.deliver, title, body, notify_type
                )
        except TimeoutError:
            return f"no answer within {timeout:g} s"

    def _log_delivered(self, attempt: Attempt) -> None:
        if attempt.number == 1:
            log.debug("notify %s: delivered", self.id, extra={"channel": self.id})
        else:
            log.info(
                "notify %s: delivered on try %d",
                self.id,
                attempt.number,
                extra={"channel": self.id},
            )

    async def aclose(self) -> None:
        """Stop taking sends and wait for those still in a worker thread (``timeout`` at most)."""
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
