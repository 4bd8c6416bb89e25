"""The apprise boundary: load it lazily, build a channel's targets, deliver one message.

This module and ``verify`` are the only ones that touch apprise.

Importing apprise loads all of its ~190 plugins (about 45 MiB RSS and 0.25-0.45 s here,
LIBRARIES.md P18), so this module imports it only inside ``build()``: a gateway without channels
never pays for it, and one with channels pays once, at start-up, not at the first alarm.

Decisions, read from apprise 2.3.0's source:

- **Threads.** ``await Apprise.async_notify()`` hands every plugin call to apprise's two
  process-wide ``ThreadPoolExecutor``s, whose threads nobody can shut down or join (they live
  until the interpreter exits). Delivery therefore uses the blocking ``Apprise.notify()`` in a
  thread the caller owns (``Channel``): with ``AppriseAsset(async_mode=False,
  service_timeout=0)`` and a single URL per ``Apprise`` object, apprise runs the whole call in
  that thread and starts none of its own.
- **One Apprise object per URL**, so a retry goes only to the URLs that have not yet accepted
  the message (tags could pick them, but an OR of tags makes apprise dispatch each chain through
  those same global pools).
- **No hidden waits or retries.** apprise's ``NotifyBase`` sleeps up to 5.5 s between two
  requests of one plugin object (``request_rate_per_sec``); the channel's limiter is the only
  rate control, so that throttle is switched off. apprise's own retry stays at 0: the channel
  retries. Connect and read timeouts are set to the channel's ``timeout``.
- **Logging.** apprise logs through the single ``apprise`` logger. At DEBUG it prints request
  URLs with their tokens, and while parsing a bad URL it logs the rejected value at WARNING
  (``An invalid DingTalk Secret (<token>) was specified.``). That logger is therefore held at
  WARNING and detached from the gateway's handlers (``propagate = False`` plus a NullHandler,
  so Python's last-resort handler does not print to stderr either). apprise still captures the
  WARNING and ERROR records of each call into its result; ``deliver()`` returns them as the
  reason for a failure, with every URL and private token of the target replaced by ``***``.
  urllib3, which apprise's plugins use through requests, logs every request line at DEBUG,
  query string included (``POST /cgi-bin/webhook/send?key=<key>``): its connection-pool logger
  is held at INFO.
- **Errcode.** With ``verify`` set, WeCom group bot and DingTalk URLs get the checking plugins of
  ``gateway.notify.verify`` (LIBRARIES.md P17).
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.core.errors import ConfigError

if TYPE_CHECKING:
    from apprise import Apprise
    from apprise.plugins.base import NotifyBase

__all__ = ["Target", "build"]

_PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
_REASON_MAX = 300  # characters of a failure reason kept


@functools.cache
def _prepare() -> None:
    """First use: quiet apprise's logger, then import apprise and all of its plugins."""
    log = logging.getLogger("apprise")
    log.setLevel(logging.WARNING)
    log.propagate = False
    log.addHandler(logging.NullHandler())
    # urllib3 (under requests) logs each request line at DEBUG, query string and all, and the
    # WeCom key and DingTalk token travel in the query string.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
    with warnings.catch_warnings():
        # apprise's PGP helper (e-mail plugin) imports the stdlib imghdr, deprecated in 3.11 and
        # shimmed by apprise for 3.13; harmless, but under -W error it aborts the plugin scan.
        warnings.filterwarnings(
            "ignore", message="'imghdr' is deprecated", category=DeprecationWarning
        )
        from apprise.plugins import N_MGR

        N_MGR.load_modules()  # type: ignore[no-untyped-call]


class Target:
    """One URL of a channel: its own ``Apprise`` object, and the strings never to show."""

    def __init__(self, label: str, notifier: Apprise, secrets: Sequence[str]) -> None:
        self.label = label
        self._notifier = notifier
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def deliver(self, title: str, body: str, notify_type: str) -> str | None:
        """Send once, blocking; run it in a worker thread. None if delivered, else why not."""
        from apprise.common import NotifyFormat

        with self._notifier.notify(
            body=body, title=title, notify_type=notify_type, body_format=NotifyFormat.TEXT
        ) as result:
            if result:
                return None
            problems = [e.message for e in result.logs() if e.level in _PROBLEM_LEVELS]
            reason = "; ".join(dict.fromkeys(problems)) or f"apprise: {result.status.name}"
        return self.redact(reason)[:_REASON_MAX]

    def redact(self, text: str) -> str:
        """``text`` with every URL and private token of this target replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def build(channel_id: str, path: Path, *, timeout: float, verify: bool) -> list[Target]:
    """The targets for the URLs in ``path``; ConfigError (naming lines, never URLs) if unusable."""
    _prepare()
    from apprise import Apprise, AppriseAsset

    from gateway.notify.verify import verified

    urls = _read_urls(path)
    if not urls:
        raise ConfigError([f"notify channel {channel_id}: {path} holds no URL"])
    asset = AppriseAsset(async_mode=False, service_timeout=0, storage_mode="memory")
    problems: list[str] = []
    targets: list[Target] = []
    for line, url in urls:
        plugin = Apprise.instantiate(url, asset=asset)
        if plugin is None:
            problems.append(
                f"notify channel {channel_id}: line {line} of {path} is not a URL apprise can"
                f" use (scheme {_scheme(url)})"
            )
            continue
        if verify:
            plugin = verified(plugin)
        plugin.socket_connect_timeout = timeout
        plugin.socket_read_timeout = timeout
        plugin.request_rate_per_sec = 0
        notifier = Apprise(asset=asset)
        notifier.add(plugin)
        label = f"line {line} ({plugin.service_name})"
        targets.append(Target(label, notifier, [url, *_private_values(plugin)]))
    if problems:
        raise ConfigError(problems)
    return targets


def _read_urls(path: Path) -> list[tuple[int, str]]:
    """(line number, URL) for each line that is neither blank nor a '#' comment."""
    lines = path.read_text(encoding="utf-8").splitlines()
    stripped = ((n, text.strip()) for n, text in enumerate(lines, start=1))
    return [(n, text) for n, text in stripped if text and not text.startswith("#")]


def _scheme(url: str) -> str:
    """The part before '://', which names a service and holds no secret."""
    scheme, sep, _ = url.partition("://")
    return f"'{scheme}'" if sep and scheme.isascii() and scheme.isalnum() else "missing"


def _private_values(plugin: NotifyBase) -> list[str]:
    """The plugin's canonical URL and the values of the tokens apprise marks private."""
    values = [plugin.url(privacy=False), plugin.password]  # type: ignore[no-untyped-call]
    for name, spec in plugin.template_tokens.items():
        if spec.get("private"):
            values.append(getattr(plugin, name, None))
    return [v for v in values if isinstance(v, str) and len(v) >= 3]
