"""The one typed seam over gpiozero, which ships no type information.

Contract:
- ``open_pin_factory(kind, device)`` returns the pin factory a GPIO device uses, or raises
  ``GpioUnavailable`` (a ``TransientError``) naming the device and every factory's reason.
  Off a Pi every default factory fails (LIBRARIES §2.3, P16): the daemon catches this, says so
  and runs without GPIO. gpiozero's ``PinFactoryFallback`` warnings never escape (under
  pytest's ``filterwarnings = error`` they would turn into exceptions mid-search); their texts
  become the reason instead. Any other warning raised meanwhile is re-emitted unchanged.
- ``auto`` uses ``Device.pin_factory`` if one is installed (a test's ``MockFactory``, or the
  factory an earlier device loaded), else gpiozero's own search: ``GPIOZERO_PIN_FACTORY``,
  then lgpio, rpigpio, pigpio, native. A loaded factory is process-wide and never closed here.
- ``mock`` uses the installed ``MockFactory``, or installs one, so a demo or a test can drive
  the pins with ``Device.pin_factory.pin(n).drive_low()``. A real factory already installed
  is left alone; the device then gets a private ``MockFactory``.
- ``input_line`` / ``output_line`` claim one pin; a failure (pin in use by another process,
  no permission on ``/dev/gpiochip*``) raises ``GpioUnavailable`` naming device and pin.

Not thread-safe: ``warnings.catch_warnings`` swaps process-wide state. Call it from the event
loop at start-up, as the drivers do.
"""

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from gpiozero import LED, Buzzer, Device, DigitalInputDevice
from gpiozero.exc import NativePinFactoryFallback, PinFactoryFallback
from gpiozero.pins.mock import MockFactory

from gateway.config.gpio import GpioInputConfig, GpioOutputConfig, PinFactoryKind
from gateway.core.errors import TransientError

log = logging.getLogger(__name__)

_FALLBACKS = (PinFactoryFallback, NativePinFactoryFallback)
_PULL_UP = {"up": True, "down": False, "none": None}  # gpiozero's pull_up argument


class GpioUnavailable(TransientError):
    """This machine has no usable GPIO for a device (no factory, pin busy, no permission)."""


class PinFactory(Protocol):
    """A gpiozero pin factory; the drivers only hand it on to the devices they create."""

    def ticks(self) -> float:
        """The factory's monotonic time."""
        ...


class InputLine(Protocol):
    """What the drivers use of a ``gpiozero.DigitalInputDevice``."""

    when_activated: Callable[[], None] | None
    when_deactivated: Callable[[], None] | None

    @property
    def is_active(self) -> bool:
        """True while the contact is closed (gpiozero's active state, before NC inversion)."""
        ...

    def close(self) -> None:
        """Release the pin and drop the callbacks."""
        ...


class OutputLine(Protocol):
    """What the drivers use of a ``gpiozero.LED`` / ``gpiozero.Buzzer``."""

    def on(self) -> None:
        """Stop any blinking and switch on."""
        ...

    def off(self) -> None:
        """Stop any blinking and switch off."""
        ...

    def blink(
        self, on_time: float, off_time: float, n: int | None = None, background: bool = True
    ) -> None:
        """Toggle from gpiozero's own background thread until ``on``/``off``/``close``."""
        ...

    def close(self) -> None:
        """Stop blinking and release the pin."""
        ...


# gpiozero's own factory search treats *any* exception from a factory as "unavailable"
# (devices.py, _default_pin_factory), and lgpio raises its own ``lgpio.error`` (no gpiozero
# base class): the two broad catches below mirror that, so no third-party error escapes.


@contextmanager
def _translated(device: str, what: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        raise GpioUnavailable(f"gpio device {device!r}: {what}: {exc}") from exc


def open_pin_factory(kind: PinFactoryKind, device: str) -> PinFactory:
    """The pin factory for ``device``; raises ``GpioUnavailable`` if there is none."""
    if kind == "mock":
        return _mock_factory()
    installed: PinFactory | None = Device.pin_factory
    if installed is not None:
        return installed
    with warnings.catch_warnings(record=True) as caught:
        for category in _FALLBACKS:
            warnings.simplefilter("always", category)
        try:
            Device.ensure_pin_factory()
        except Exception as exc:  # noqa: BLE001  (any factory error means "no GPIO"; see above)
            failure: Exception | None = exc
        else:
            failure = None
    reasons = []
    for w in caught:
        if issubclass(w.category, _FALLBACKS):
            reasons.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if failure is not None:
        named = os.environ.get("GPIOZERO_PIN_FACTORY")
        what = f"pin factory GPIOZERO_PIN_FACTORY={named!r}" if named else "no usable pin factory"
        tried = f" ({'; '.join(reasons)})" if reasons else ""
        raise GpioUnavailable(
            f"gpio device {device!r}: {what}: {failure}{tried}. Running without GPIO; on a Pi "
            "install python3-lgpio, or set pin_factory: mock for a demo"
        ) from failure
    factory: PinFactory = Device.pin_factory
    log.info("gpio device %s uses %s", device, type(factory).__name__, extra={"fallbacks": reasons})
    return factory


def _mock_factory() -> PinFactory:
    installed: PinFactory | None = Device.pin_factory
    if isinstance(installed, MockFactory):
        mock: PinFactory = installed  # (MockFactory is untyped: isinstance narrows to Any)
        return mock
    factory: PinFactory = MockFactory()
    if installed is None:
        Device.pin_factory = factory
    return factory


def input_line(factory: PinFactory, device: str, cfg: GpioInputConfig) -> InputLine:
    """Claim ``cfg.pin`` as an input; ``is_active`` then means "contact closed"."""
    # gpiozero infers the active state from the pull and refuses one with a pull (config
    # checks that the pull and active_level agree); only a floating line needs it stated.
    active_state = (cfg.closed_level == "high") if cfg.pull == "none" else None
    with _translated(device, f"input {cfg.name!r} on GPIO{cfg.pin}"):
        # No bounce_time: debouncing is ours (inputs.py), the same on every factory.
        line: InputLine = DigitalInputDevice(
            cfg.pin, pull_up=_PULL_UP[cfg.pull], active_state=active_state, pin_factory=factory
        )
    return line


def output_line(factory: PinFactory, device: str, cfg: GpioOutputConfig) -> OutputLine:
    """Claim ``cfg.pin`` as an output, switched off: a ``Buzzer`` for a siren, else an ``LED``."""
    cls = Buzzer if cfg.kind == "siren" else LED
    with _translated(device, f"output {cfg.name!r} on GPIO{cfg.pin}"):
        line: OutputLine = cls(
            cfg.pin, active_high=cfg.active_high, initial_value=False, pin_factory=factory
        )
    return line
