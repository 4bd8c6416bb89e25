"""The one way back to the devices: every ``Order`` goes through one ``Dispatcher``.

Contract:
- ``execute(order)`` carries an order out now and returns a small JSON-able result, or raises
  ``OrderFailed`` with a reason fit for the platform (nothing else escapes but bugs and
  cancellation). Routing: ``SoundSiren`` to every attached actuator that accepts it (none is
  fine: a gateway may have no siren); ``UnlockDoor`` to the one actuator that accepts it;
  ``Acknowledge``, ``Reset`` and ``Silence`` to the alarm engine, once it is ready.
- ``submit(order)`` is for callers that cannot wait (the alarm engine's siren output, a
  pressed acknowledge button): the order is queued and ``run()`` carries it out; a full queue
  drops the order, counts it in ``dropped`` and logs the first drop of a run of drops.
- Every order is audited the same way: one log line (what, by whom, outcome) and, unless the
  caller says its source audits it already (``audited=True``: signed platform commands, the
  fire linkage's repeated unlocks, the siren that mirrors alarm records), an ``audit`` record
  (event lane) upstream.
- ``attach(actuator)`` adds an actuator for as long as its driver runs and returns the
  function that detaches it; a siren attached late is given the current pattern at once,
  so a restarted GPIO device resumes sounding.
- No task of its own beyond ``run()``, which its owner (the runtime) awaits.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from drivers.base import Actuator
from gateway.alarms.lifecycle import LifecycleError
from gateway.core.clock import Clock
from gateway.core.command import Acknowledge, Order, Reset, Severity, Silence, SoundSiren
from gateway.core.errors import GatewayError
from gateway.core.messages import Lane, Record

log = logging.getLogger(__name__)
QUEUE_MAX = 100  # queued orders; a storm of button presses beyond this is dropped and counted


class OrderFailed(GatewayError):
    """The order was understood but could not be carried out; the message says why."""


class AlarmControl(Protocol):
    """What orders ask of the alarm engine."""

    @property
    def ready(self) -> asyncio.Event: ...
    async def acknowledge(self, alarm_id: str, by: str) -> list[Any]: ...
    async def reset(self, alarm_id: str, by: str) -> list[Any]: ...
    async def acknowledge_all(self, by: str) -> int: ...
    async def reset_all(self, by: str) -> int: ...
    def silence(self) -> int: ...


class Dispatcher:
    """Routes each ``Order`` to its actuator or to the alarm engine, and audits it."""

    def __init__(
        self,
        alarms: Callable[[], AlarmControl | None],
        add: Callable[[Record], None],
        clock: Clock,
        synced: Callable[[], bool],
    ) -> None:
        self.alarms = alarms
        self.add = add
        self.clock = clock
        self.synced = synced
        self.severity: Severity = None  # the pattern the sirens were last told
        self.executed = 0
        self.failed = 0
        self.dropped = 0
        self._actuators: list[Actuator] = []
        self._queue: asyncio.Queue[Order] = asyncio.Queue(QUEUE_MAX)

    async def attach(self, actuator: Actuator) -> Callable[[], None]:
        """Route orders to ``actuator`` until the returned function is called."""
        self._actuators.append(actuator)
        siren = SoundSiren(self.severity, "resume")
        if actuator.accepts(siren):
            await actuator.apply(siren)
        return lambda: self._actuators.remove(actuator)

    def submit(self, order: Order) -> None:
        """Queue ``order`` for ``run()``; never blocks."""
        try:
            self._queue.put_nowait(order)
        except asyncio.QueueFull:
            if not self.dropped:
                log.error("order queue full: %s by %s dropped", order.name, order.by)
            self.dropped += 1

    async def run(self) -> None:
        """Carry out submitted orders in order, until cancelled."""
        while True:
            order = await self._queue.get()
            audited = isinstance(order, SoundSiren)
            with contextlib.suppress(OrderFailed):  # audited by execute; nobody waits for it
                await self.execute(order, audited=audited)

    async def execute(self, order: Order, *, audited: bool = False) -> dict[str, Any]:
        """Carry ``order`` out now (see the module docstring); raises ``OrderFailed``."""
        try:
            result = await self._route(order)
        except OrderFailed as exc:
            self.failed += 1
            self._audit(order, "failed", str(exc), audited)
            raise
        self.executed += 1
        self._audit(order, "executed", json.dumps(result, default=str), audited)
        return result

    async def _route(self, order: Order) -> dict[str, Any]:
        if isinstance(order, SoundSiren):
            self.severity = order.severity
            for actuator in [a for a in self._actuators if a.accepts(order)]:
                await self._apply(actuator, order)
            return {"severity": order.severity}
        if isinstance(order, Acknowledge | Reset | Silence):
            return await self._alarm(order)
        door = next((a for a in self._actuators if a.accepts(order)), None)
        if door is None:
            raise OrderFailed(f"no configured door {order.door!r}")
        await self._apply(door, order)
        return {"door": order.door, "seconds": order.seconds}

    @staticmethod
    async def _apply(actuator: Actuator, order: Order) -> None:
        try:
            await actuator.apply(order)
        except GatewayError as exc:
            raise OrderFailed(str(exc)) from None

    async def _alarm(self, order: Acknowledge | Reset | Silence) -> dict[str, Any]:
        engine = self.alarms()
        if engine is None or not engine.ready.is_set():
            raise OrderFailed("the alarm engine is starting; try again")
        if isinstance(order, Silence):
            return {"silenced": engine.silence()}
        ack = isinstance(order, Acknowledge)
        try:
            if order.alarm_id is None:
                act_all = engine.acknowledge_all if ack else engine.reset_all
                return {"alarms": await act_all(order.by)}
            act = engine.acknowledge if ack else engine.reset
            transitions = await act(order.alarm_id, order.by)
        except LifecycleError as exc:
            raise OrderFailed(str(exc)) from None
        return {"alarm_id": order.alarm_id, "changed": bool(transitions) or not ack}

    def _audit(self, order: Order, outcome: str, detail: str, audited: bool) -> None:
        level = logging.WARNING if outcome == "failed" else logging.INFO
        log.log(
            level,
            "order %s by %s %s: %s",
            order.name,
            order.by,
            outcome,
            detail[:200],
            extra={"order": order.name, "by": order.by, "outcome": outcome},
        )
        if audited:
            return
        body = {
            "kind": "command",
            "command_id": None,
            "name": order.name,
            "outcome": outcome,
            "detail": f"{order.by}: {detail}"[:300],
            "authenticated": False,  # a local order carries no signature
        }
        self.add(Record(Lane.EVENT, "audit", self.clock.wall(), self.synced(), fields=body))
