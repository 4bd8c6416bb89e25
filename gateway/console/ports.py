"""What the field console sees of the running gateway: narrow ports, never the runtime.

Contract:
- ``ConsolePorts`` is built by the composition root. The console reads alarms and acts on
  them only through ``desk`` (the ``AlarmDesk`` the local API uses too), devices only
  through ``devices`` (the last-value cache), everything else of the gateway through
  ``snapshot()`` (the aggregate health and metrics read), and writes nothing but the audit
  trail (``audit``: one record upstream on ``audit`` per action).
- ``rule_types`` maps a contact rule to its type (emergency, fire...), for the alarms' wording.
- ``commissioner`` is None on a gateway without Modbus buses: scan and read are then not
  offered.
- ``reports`` is the availability history (the local API's ``AvailabilitySource``: the
  running gateway's report service); None on a console without one, whose reports answer 501.
  The response report of a period comes from ``desk``.
- ``welfare`` gives the welfare monitor running now (the local API's ``WelfareDesk``; None
  while it restarts); ``welfare`` itself is None when the config has no ``welfare`` section,
  and the Welfare view is then not offered.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gateway.core.devices import DeviceState
from gateway.core.messages import Json
from gateway.ops.api import AlarmDesk
from gateway.ops.device_api import Commissioner
from gateway.ops.report_api import AvailabilitySource
from gateway.ops.snapshot import GatewaySnapshot
from gateway.ops.welfare_api import WelfareDesk


class DeviceFeed(Protocol):
    """The last-value cache as the console reads it (``gateway.core.devices.DeviceStates``)."""

    version: int

    def snapshot(self) -> Mapping[str, DeviceState]:
        """Every device now; an unchanged device is the very same object as before."""
        ...

    async def changed(self, since: int) -> int:
        """The version, once it differs from ``since``."""
        ...


Audit = Callable[[str, str, Mapping[str, Json]], None]  # action, target, fields (who, role...)


@dataclass(frozen=True)
class ConsolePorts:
    """Everything the console reads and does (see the module docstring)."""

    site: str
    zone: str  # the community's time zone (IANA): where "today" starts
    desk: AlarmDesk
    devices: DeviceFeed
    snapshot: Callable[[], GatewaySnapshot]
    audit: Audit
    rule_types: Mapping[str, str] = field(default_factory=dict)  # contact rule -> its type
    commissioner: Commissioner | None = None
    bus_names: list[str] = field(default_factory=list)  # the configured buses, to scan
    reports: AvailabilitySource | None = None
    welfare: Callable[[], WelfareDesk | None] | None = None  # the monitor running now
