"""The device model: the few Protocols a device kind implements, and what drivers emit.

A kind is one package in ``drivers/`` plus one line in ``drivers.registry``. Its factory
builds, from the config, one ``DriverGroup`` per unit that restarts on its own (a Modbus bus,
a local-broker session, a GPIO device), made of:

- ``Polled`` devices: ``poll()`` answers once (a ``RawSample`` of decoded values, scaled by
  the pipeline, or a ``Sample``); the runtime's pollers drive them on their schedule and
  keep their availability.
- ``Streaming`` components: ``run(emit)`` runs until cancelled and hands every message to
  ``emit`` (the pipeline), synchronously and in order of arrival.
- ``Actuator``s: ``accepts(order)`` says whether an order is theirs, ``apply(order)`` carries
  it out (raising ``TransientError`` or ``PermanentError`` when it cannot).

Drivers that hold resources are async context managers: opened in ``__aenter__``, always
released in ``__aexit__``; the group's ``contexts`` are entered before anything runs.
A kind's factory (``Factory`` in ``drivers.registry``) is ``plan(cfg, ports)``: the
``GroupPlan``s of the kind's devices, each built only when its group starts.
"""

import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.clock import Clock
from gateway.core.command import Order
from gateway.core.items import Item, RawSample, Stage
from gateway.core.messages import Sample

Emit = Callable[[Item], None]  # what drivers emit to: the pipeline


class Polled(Protocol):
    """A device that answers when asked."""

    @property
    def id(self) -> str: ...

    @property
    def disabled(self) -> Mapping[str, str]:
        """Points no longer read, and why."""
        ...

    async def poll(self) -> RawSample | Sample:
        """Read the device once; raise ``TransientError`` when it does not answer."""
        ...


class Streaming(Protocol):
    """A component that listens until cancelled and emits what it hears."""

    async def run(self, emit: Emit) -> None:
        """Emit every message through ``emit`` until cancelled."""
        ...


class Actuator(Protocol):
    """Something orders can be sent to: sirens, strobes, door terminals."""

    def accepts(self, order: Order) -> bool:
        """Whether ``order`` is for this actuator."""
        ...

    async def apply(self, order: Order) -> None:
        """Carry ``order`` out; raises ``GatewayError`` subclasses when it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """How often to poll a device, and when to give up on it for a while."""

    interval: float
    offline_after: int
    backoff_max: float


@dataclass
class DriverGroup:
    """What one restartable group runs: built by its kind's factory from its config.

    ``polled``: devices with their schedules. ``streams``: named components.
    ``actuators``: attached to the dispatcher while the group runs. ``contexts``: entered
    before anything runs, exited after. ``probes``: readiness of connections, by name.
    ``rejects``: per input component, its rejected-message counters by reason.
    ``closers``: what to release when the group stops (a bus's connection).
    ``stages``: the kind's own pipeline stages, run after pseudonymise and before the device
    state in the pipeline the group emits to (the buttons' and the doors' dedup memories,
    the door tracker). A kind never calls pipeline code itself.
    """

    polled: list[tuple[Polled, PollSchedule]] = field(default_factory=list)
    streams: list[tuple[str, Streaming]] = field(default_factory=list)
    actuators: list[Actuator] = field(default_factory=list)
    contexts: list[AbstractAsyncContextManager[Any]] = field(default_factory=list)
    probes: dict[str, Callable[[], bool]] = field(default_factory=dict)
    rejects: dict[str, Callable[[], dict[str, int]]] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)


@dataclass(frozen=True)
class Ports:
    """What a kind's factory may hand to the drivers it builds."""

    clock: Clock
    submit: Callable[[Order], None]  # queue an order (an acknowledge button) for the dispatcher
    count: Callable[[str, str], None]  # add one to a device's counter (``rejected``) in its state
    gauge: Callable[[str, str, float], None] | None = None  # set a device's gauge (clock skew)
    # returns once everything emitted so far is committed (alarms raised, records stored): an
    # input that can raise an alarm acknowledges its message only then, and an HTTP device is
    # answered only then (``drivers.http_push``)
    settled: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True)
class GroupPlan:
    """One group a kind's factory plans: ``build`` makes it when (and each time) it starts.

    ``key`` is the JSON of everything the group is built from: a reload restarts the group
    only when it changed. ``build`` opens nothing: resources are opened by ``contexts`` and
    the streams when the group runs, so a restart never holds a port twice.
    """

    name: str
    key: str
    build: Callable[[], DriverGroup]


def config_key(*parts: object) -> str:
    """A group's ``key``: the JSON of what it is built from."""
    return json.dumps(parts, sort_keys=True, default=str)
