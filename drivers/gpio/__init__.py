"""The Pi's GPIO header through gpiozero: dry-contact inputs and local outputs.

``GpioInputs`` turns contact edges into ``ContactEvent``s on the event loop; ``GpioOutputs``
drives sirens, strobes and LEDs in patterns. GPIO is optional: both raise ``GpioUnavailable``
(a ``TransientError``) on a machine without it. Only this package imports gpiozero.
"""

from drivers.gpio.inputs import Debouncer, GpioInputs
from drivers.gpio.outputs import GpioOutputs, Pattern, pattern_for
from drivers.gpio.pins import GpioUnavailable, open_pin_factory

__all__ = [
    "Debouncer",
    "GpioInputs",
    "GpioOutputs",
    "GpioUnavailable",
    "Pattern",
    "open_pin_factory",
    "pattern_for",
]
