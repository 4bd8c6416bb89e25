"""All notification channels by id; one message to several channels at once.

Contract: ``Notifier.send`` sends to each named channel concurrently (one task per channel in a
TaskGroup), so a slow or dead channel never delays another, and returns every channel's
attempts. Like ``Channel.send`` it does not raise for a delivery failure; an unknown channel id
is a configuration error and raises ``ConfigError`` before anything is sent.

Channels are apprise channels (``Channel``) or modem channels (``ModemChannel``); modem
channels that name one port share one ``Modem``, which ``watch`` checks periodically and
``aclose`` closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Protocol, Self

from gateway.config.notify import ChannelConfig, ModemChannelConfig
from gateway.core.clock import Clock
from gateway.core.errors import ConfigError
from gateway.core.snapshots import ModemState
from gateway.notify.channel import Attempt, Channel, Severity
from gateway.notify.modem import Modem, ModemChannel

__all__ = ["Notifier", "Sender"]


class Sender(Protocol):
    """What the notifier needs of a channel."""

    id: str
    fallback: bool  # used only while the internet channels fail

    async def send(self, title: str, body: str, *, severity: Severity) -> list[Attempt]:
        """Deliver; one ``Attempt`` per try, never raising for a failed delivery."""
        ...

    async def aclose(self) -> None:
        """Release what the channel holds."""
        ...


class Notifier:
    """Owns the channels (and modems); closing it waits for sends still running."""

    def __init__(self, channels: Iterable[Sender], modems: Iterable[Modem] = ()) -> None:
        self._channels: dict[str, Sender] = {}
        self._modems = list(modems)
        for channel in channels:
            if channel.id in self._channels:
                raise ConfigError([f"notify channel {channel.id}: defined twice"])
            self._channels[channel.id] = channel

    @classmethod
    def from_config(
        cls, configs: Iterable[ChannelConfig | ModemChannelConfig], *, clock: Clock | None = None
    ) -> Self:
        """Build every channel (this imports apprise if there is at least one apprise channel)."""
        modems: dict[str, Modem] = {}
        channels: list[Sender] = []
        for config in configs:
            if isinstance(config, ModemChannelConfig):
                modem = modems.setdefault(str(config.port), Modem(config, clock=clock))
                channels.append(ModemChannel(config, modem, clock=clock))
            else:
                channels.append(Channel(config, clock=clock))
        return cls(channels, modems.values())

    @property
    def ids(self) -> frozenset[str]:
        """The ids of the configured channels."""
        return frozenset(self._channels)

    @property
    def fallback(self) -> frozenset[str]:
        """The ids of the channels marked ``fallback``."""
        return frozenset(cid for cid, ch in self._channels.items() if ch.fallback)

    async def send(
        self, channel_ids: Iterable[str], title: str, body: str, *, severity: Severity
    ) -> dict[str, list[Attempt]]:
        """Send to every channel in ``channel_ids`` at once; their attempts by channel id."""
        wanted = list(dict.fromkeys(channel_ids))
        unknown = [cid for cid in wanted if cid not in self._channels]
        if unknown:
            raise ConfigError([f"no notify channel {cid!r}" for cid in unknown])
        async with asyncio.TaskGroup() as group:
            tasks = {
                cid: group.create_task(
                    self._channels[cid].send(title, body, severity=severity),
                    name=f"notify:{cid}",
                )
                for cid in wanted
            }
        return {cid: task.result() for cid, task in tasks.items()}

    async def watch(self, report: Callable[[str, ModemState], None]) -> None:
        """Check every modem periodically; ``report(channel_id, state)`` for each of its
        channels after each check. Runs until cancelled; returns at once without modems."""
        if not self._modems:
            return
        users = {
            modem.port: [
                cid
                for cid, ch in self._channels.items()
                if isinstance(ch, ModemChannel) and ch.modem is modem
            ]
            for modem in self._modems
        }

        def told(channel_ids: list[str]) -> Callable[[ModemState], None]:
            def tell(state: ModemState) -> None:
                for cid in channel_ids:
                    report(cid, state)

            return tell

        async with asyncio.TaskGroup() as group:
            for modem in self._modems:
                group.create_task(modem.run(told(users[modem.port])), name=f"modem:{modem.port}")

    async def aclose(self) -> None:
        """Close every channel and modem, concurrently."""
        async with asyncio.TaskGroup() as group:
            for cid, channel in self._channels.items():
                group.create_task(channel.aclose(), name=f"notify-close:{cid}")
            for modem in self._modems:
                group.create_task(modem.aclose(), name=f"modem-close:{modem.port}")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
