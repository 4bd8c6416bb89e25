"""The ``gpio`` kind: one group per GPIO device, its contact inputs and its outputs.

- Inputs stream ``ContactEvent``s; an input whose role is ``ack`` or ``reset`` does not: a
  press becomes an ``Acknowledge`` / ``Reset`` order for every open alarm, queued for the
  dispatcher (``Ports.submit``), by ``<device>/<input>``.
- Outputs (sirens, strobes, LEDs) are an actuator of ``SoundSiren``: each shows the pattern of
  the severity (``pattern_for``), or goes off.
- Whether the inputs run is the device's availability: a ``DeviceStatus`` online once its
  pins are open, offline with the reason when they cannot be (no pin factory off a Pi, a pin
  in use, no permission). The gateway runs on without that device, but health lists it as
  not running and a contact rule naming it raises ``input_unavailable``. The first failure
  is logged as an error; the device tries again every ``RETRY_S`` seconds (quietly), and once
  its pins open it is online again, which clears the alarm.
"""

import asyncio
import functools
import logging

from drivers.base import DriverGroup, Emit, GroupPlan, Ports, config_key
from drivers.gpio.inputs import GpioInputs
from drivers.gpio.outputs import GpioOutputs, pattern_for
from drivers.gpio.pins import GpioUnavailable
from gateway.config.gpio import GpioDeviceConfig
from gateway.config.models import Config
from gateway.core.command import Acknowledge, Order, Reset, SoundSiren
from gateway.core.errors import PermanentError
from gateway.core.messages import ContactEvent, DeviceStatus

log = logging.getLogger(__name__)
RETRY_S = 30.0  # between attempts to open the pins of a device that could not


def plan(cfg: Config, ports: Ports) -> list[GroupPlan]:
    """One group per GPIO device."""
    return [
        GroupPlan(
            f"gpio:{dev.id}",
            config_key(dev.model_dump(mode="json")),
            functools.partial(_group, dev, ports),
        )
        for dev in cfg.devices
        if isinstance(dev, GpioDeviceConfig)
    ]


def _group(dev: GpioDeviceConfig, ports: Ports) -> DriverGroup:
    group = DriverGroup()
    if dev.inputs:
        group.streams.append((f"driver:{dev.id}", Buttons(dev, ports)))
    if dev.outputs:
        sirens = Sirens(dev)
        group.contexts.append(sirens.outputs)
        group.actuators.append(sirens)
    return group


class Buttons:
    """A GPIO device's inputs as a streaming component."""

    def __init__(self, dev: GpioDeviceConfig, ports: Ports) -> None:
        self.dev = dev
        self.ports = ports
        self.roles = {i.name: i.role for i in dev.inputs}

    async def run(self, emit: Emit) -> None:
        """Report contacts to ``emit`` and button presses as orders, until cancelled."""

        def contact(event: ContactEvent) -> None:
            role = self.roles.get(event.input, "alarm")
            if role == "alarm":
                emit(event)
            elif event.active:
                by = f"{self.dev.id}/{event.input}"
                self.ports.submit(Acknowledge(None, by) if role == "ack" else Reset(None, by))

        clock, failed = self.ports.clock, ""
        while True:
            try:
                async with GpioInputs(self.dev, contact, clock):
                    emit(DeviceStatus(self.dev.id, True, clock.wall(), "ok"))
                    await asyncio.Future()  # until cancelled
            except GpioUnavailable as exc:
                if str(exc) != failed:
                    log.error(
                        "%s; the gateway runs without GPIO device %s and tries again every %.0f s",
                        exc,
                        self.dev.id,
                        RETRY_S,
                    )
                failed = str(exc)
                emit(DeviceStatus(self.dev.id, False, clock.wall(), failed))
            await asyncio.sleep(RETRY_S)


class Sirens:
    """A GPIO device's outputs as the actuator of ``SoundSiren``."""

    def __init__(self, dev: GpioDeviceConfig) -> None:
        self.dev = dev
        self.outputs = GpioOutputs(dev)

    def accepts(self, order: Order) -> bool:
        """Every ``SoundSiren`` is ours."""
        return isinstance(order, SoundSiren)

    async def apply(self, order: Order) -> None:
        """Show the pattern of the order's severity on every output (None: off)."""
        if not isinstance(order, SoundSiren):
            raise PermanentError(f"gpio device {self.dev.id} cannot carry out {order.name!r}")
        for out in self.dev.outputs:
            severity = order.severity
            self.outputs.set(
                out.name, None if severity is None else pattern_for(severity, out.kind)
            )
