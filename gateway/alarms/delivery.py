"""How the alarm engine reaches staff: the ``Dispatcher`` port and its outcome, ``Delivery``.

The engine asks a ``Dispatcher`` to send one message to several channels and gets one
``Delivery`` per attempt back; a failed channel is an outcome, never an exception.
``NotifierDispatcher`` adapts ``gateway.notify.Notifier`` (apprise behind it) to that port.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.notify import Notifier


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one attempt on one channel."""

    channel: str
    ok: bool
    error: str = ""


class Dispatcher(Protocol):
    """Sends one message to several channels; never raises for delivery failures."""

    async def send(
        self, channels: Sequence[str], title: str, body: str, severity: str
    ) -> list[Delivery]:
        """Deliver; one ``Delivery`` per attempt."""
        ...


async def send_planned(
    dispatcher: Dispatcher,
    plan: tuple[Sequence[str], Sequence[str]],
    title: str,
    body: str,
    severity: str,
) -> list[Delivery]:
    """Send to ``plan[0]``, then to ``plan[1]`` (fallback channels) if none of those delivered."""
    now, spare = plan
    sent = await dispatcher.send(now, title, body, severity) if now else []
    if spare and not any(d.ok for d in sent):
        sent += await dispatcher.send(spare, title, body, severity)
    return sent


class NotifierDispatcher:
    """Adapts ``gateway.notify.Notifier`` to the engine: one ``Delivery`` per attempt."""

    def __init__(self, notifier: "Notifier") -> None:
        self.notifier = notifier

    async def send(
        self, channels: Sequence[str], title: str, body: str, severity: str
    ) -> list[Delivery]:
        sev: Any = severity
        results = await self.notifier.send(list(channels), title, body, severity=sev)
        return [Delivery(cid, a.ok, a.error) for cid, tries in results.items() for a in tries]
