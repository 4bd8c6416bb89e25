"""Local outputs of one GPIO device (siren, strobe, LED) driven in patterns.

Contract:
- ``async with GpioOutputs(cfg) as outputs:`` claims every output of one ``GpioDeviceConfig``,
  switched off; ``GpioUnavailable`` if the machine has no GPIO or a pin cannot be claimed, and
  then nothing stays claimed. ``__aexit__`` switches every output off, stops its blink thread
  and releases the pin.
- ``set(name, pattern)`` is synchronous and returns promptly: the patterns are gpiozero's own
  ``blink`` on a ``Buzzer`` (siren) or ``LED`` (strobe, LED) in a background thread; no
  hand-made toggling loop. Setting the pattern an output already has changes nothing, so a
  re-notification does not restart a beep cycle. ``None`` switches the output off.
- ``active_high: false`` (active-low relay boards) is gpiozero's business: "on" is then a low
  pin, and "off" (including at open and close) a high one.

Patterns (seconds on / off):

========  ==========================
steady    on
fast      0.25 / 0.25
slow      1 / 1
beep      0.1 / 0.9
========  ==========================

``pattern_for(severity, kind)`` is the one place that maps an alarm's severity to a pattern:

==========  ======  ======  ====
severity    siren   strobe  led
==========  ======  ======  ====
critical    steady  fast    fast
warning     beep    slow    slow
info        off     off     slow
==========  ======  ======  ====
"""

import contextlib
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, Self, get_args

from drivers.gpio.pins import OutputLine, open_pin_factory, output_line
from gateway.config.gpio import GpioDeviceConfig
from gateway.core.errors import PermanentError

log = logging.getLogger(__name__)

Pattern = Literal["steady", "fast", "slow", "beep"]

BLINK: Mapping[Pattern, tuple[float, float]] = MappingProxyType(
    {"fast": (0.25, 0.25), "slow": (1.0, 1.0), "beep": (0.1, 0.9)}
)

_PATTERNS: Mapping[str, Mapping[str, Pattern | None]] = MappingProxyType(
    {
        "critical": {"siren": "steady", "strobe": "fast", "led": "fast"},
        "warning": {"siren": "beep", "strobe": "slow", "led": "slow"},
        "info": {"siren": None, "strobe": None, "led": "slow"},
    }
)


def pattern_for(severity: str, kind: str) -> Pattern | None:
    """The pattern an output of ``kind`` shows for an alarm of ``severity`` (None: off).

    Raises:
        ValueError: an unknown severity or output kind.
    """
    try:
        return _PATTERNS[severity][kind]
    except KeyError:
        raise ValueError(
            f"no pattern for severity {severity!r} on a {kind!r}: severities "
            f"{list(_PATTERNS)}, kinds {list(_PATTERNS['critical'])}"
        ) from None


class GpioOutputs:
    """The sirens, strobes and LEDs of one GPIO device."""

    def __init__(self, cfg: GpioDeviceConfig) -> None:
        self.cfg = cfg
        self._lines: dict[str, OutputLine] = {}
        self._patterns: dict[str, Pattern | None] = {}
        self._stack = contextlib.ExitStack()

    @property
    def patterns(self) -> Mapping[str, Pattern | None]:
        """The pattern each output shows now (None: off), for status reports."""
        return MappingProxyType(self._patterns)

    async def __aenter__(self) -> Self:
        factory = open_pin_factory(self.cfg.pin_factory, self.cfg.id)
        try:
            for ocfg in self.cfg.outputs:
                line = output_line(factory, self.cfg.id, ocfg)
                self._stack.callback(line.close)
                self._stack.callback(line.off)  # runs first: a defined level, then release
                self._lines[ocfg.name] = line
                self._patterns[ocfg.name] = None
        except BaseException:
            self._stack.close()
            raise
        log.info("gpio device %s: %d outputs open", self.cfg.id, len(self._lines))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stack.close()
        self._lines.clear()
        self._patterns.clear()

    def set(self, name: str, pattern: Pattern | None) -> None:
        """Show ``pattern`` on output ``name`` (None: off).

        Raises:
            PermanentError: the device has no (open) output ``name``.
            ValueError: ``pattern`` is not one of ``Pattern``.
        """
        line = self._lines.get(name)
        if line is None:
            raise PermanentError(f"gpio device {self.cfg.id!r} has no open output {name!r}")
        if pattern is not None and pattern not in get_args(Pattern):
            raise ValueError(f"unknown pattern {pattern!r}; use one of {get_args(Pattern)}")
        if self._patterns[name] == pattern:
            return
        if pattern is None:
            line.off()
        elif pattern == "steady":
            line.on()
        else:
            on_time, off_time = BLINK[pattern]
            line.blink(on_time, off_time, None, True)  # n=None: until changed; in background
        self._patterns[name] = pattern

    def silence_all(self) -> None:
        """Switch every output off (an acknowledgement silences the site)."""
        for name in self._lines:
            self.set(name, None)
