"""All notification channels by id; one message to several channels at once.

Contract: ``Notifier.send`` sends to each named channel concurrently (one task per channel in a
TaskGroup), so a slow or dead channel never delays another, and returns every channel's
attempts. Like ``Channel.send`` it does not raise for a delivery failure; an unknown channel id
is a configuration error and raises ``ConfigError`` before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from gateway.config.notify import ChannelConfig
from gateway.core.clock import Clock
from gateway.core.errors import ConfigError
from gateway.notify.channel import Attempt, Channel, Severity

__all__ = ["Notifier"]


class Notifier:
    """Owns the channels; closing it waits for sends still running in their threads."""

    def __init__(self, channels: Iterable[Channel]) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            if channel.id in self._channels:
                raise ConfigError([f"notify channel {channel.id}: defined twice"])
            self._channels[channel.id] = channel

    @classmethod
    def from_config(cls, configs: Iterable[ChannelConfig], *, clock: Clock | None = None) -> Self:
        """Build every channel (this imports apprise if there is at least one)."""
        return cls(Channel(config, clock=clock) for config in configs)

    @property
    def ids(self) -> frozenset[str]:
        """The ids of the configured channels."""
        return frozenset(self._channels)

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

    async def aclose(self) -> None:
        """Close every channel, concurrently."""
        async with asyncio.TaskGroup() as group:
            for cid, channel in self._channels.items():
                group.create_task(channel.aclose(), name=f"notify-close:{cid}")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
