"""Config models of Modbus buses, devices and points.

A *bus* is one physical line (an RS-485 port) or one TCP endpoint: every device on it shares
one lock, so requests never overlap. A *device* is one unit id on a bus, polled at its own
interval. A *point* is one value in one register table. A *profile* is the register map of a
class of sensor that devices name (``ProfileConfig``); its optional *probe* lists the few
registers a scan reads to guess whether an unknown unit is of that class (docs/profiles.md).
"""

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from gateway.config.base import SUPPLIER, Model, Name, Supplier

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["bool", "int16", "uint16", "int32", "uint32", "float32"]

REGISTER_COUNT: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
}
BIT_TABLES = ("coil", "discrete")


class PointConfig(Model):
    """One value read from a device."""

    name: Name = Field(description="Point name, unique within the device (e.g. pm25)")
    table: Table = Field(
        "holding",
        description="Register table: holding (FC3), input (FC4), coil (FC1), discrete (FC2)",
    )
    address: int = Field(ge=0, le=65535, description="0-based register or bit address")
    type: DataType = Field("uint16", description="How the registers decode")
    word_order: Literal["big", "little"] = Field(
        "big", description="Order of the 16-bit words of a 32-bit value (big: high word first)"
    )
    byte_order: Literal["big", "little"] = Field(
        "big", description="Byte order inside each register (little: swapped, 'BADC'/'DCBA')"
    )
    scale: float = Field(1.0, description="value = raw * scale + offset")
    offset: float = Field(0.0, description="value = raw * scale + offset")
    unit: str = Field("", max_length=16, description="Unit of the scaled value, e.g. ug/m3")
    range: tuple[float, float] | None = Field(
        None,
        description="Physical range [min, max] of the scaled value; outside it the reading "
        "is forwarded with quality 'bad'",
    )
    enabled: bool = Field(True, description="false drops a point inherited from a profile")
    description: str = Field("", max_length=200, description="Free text")

    @property
    def count(self) -> int:
        """Registers (or bits) this point occupies."""
        return REGISTER_COUNT[self.type]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        bit_table = self.table in BIT_TABLES
        if bit_table != (self.type == "bool"):
            raise ValueError(
                f"type {self.type!r} does not fit table {self.table!r}: coil and discrete "
                "points are 'bool', holding and input points are numeric"
            )
        if self.address + self.count - 1 > 65535:
            raise ValueError(f"address {self.address} + {self.count} registers passes 65535")
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError(f"range {list(self.range)}: min must be below max")
        if self.scale == 0:
            raise ValueError("scale 0 would turn every reading into the offset")
        return self


class _BusBase(Model):
    id: Name = Field(description="Bus id that devices refer to")
    timeout: float = Field(
        1.0,
        gt=0,
        le=30,
        description="Seconds to wait for one response (pymodbus's 3 s is too long)",
    )
    retries: int = Field(1, ge=0, le=5, description="Extra attempts per request")
    gap: float = Field(0.0, ge=0, le=5, description="Pause between two requests on this bus (s)")

    @property
    def request_budget(self) -> float:
        """Worst-case seconds one request holds the bus."""
        return self.timeout * (self.retries + 1)


class ModbusTcpBusConfig(_BusBase):
    """A Modbus TCP endpoint (a gateway or a sensor with Ethernet), or, as
    ``modbus_rtu_over_tcp``, an RS-485 line behind a serial server that carries RTU frames
    over TCP unchanged (a converter in transparent mode): the same lock and pacing as a
    serial line, so its ``gap`` defaults to the serial 0.02 s."""

    kind: Literal["modbus_tcp", "modbus_rtu_over_tcp"]
    host: str = Field(min_length=1, description="Host name or address")
    port: int = Field(502, ge=1, le=65535, description="TCP port")

    @model_validator(mode="before")
    @classmethod
    def _serial_gap(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "modbus_rtu_over_tcp":
            return {"gap": 0.02, **data}
        return data

    @property
    def rtu_frames(self) -> bool:
        """Whether RTU frames travel over the TCP connection (a serial server)."""
        return self.kind == "modbus_rtu_over_tcp"


class ModbusRtuBusConfig(_BusBase):
    """An RS-485 line driven in Modbus RTU."""

    kind: Literal["modbus_rtu"]
    port: str = Field(
        min_length=1, description="Serial device; prefer a stable /dev/serial/by-id/... path"
    )
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = Field(
        9600, description="Line speed"
    )
    parity: Literal["N", "E", "O"] = Field("N", description="Parity: none, even, odd")
    stopbits: Literal[1, 2] = Field(1, description="Stop bits")
    bytesize: Literal[7, 8] = Field(8, description="Data bits")
    timeout: float = Field(0.5, gt=0, le=30, description="Seconds to wait for one response")
    gap: float = Field(
        0.02, ge=0, le=5, description="Silence between two requests (s); slow sensors need more"
    )


BusConfig = Annotated[ModbusTcpBusConfig | ModbusRtuBusConfig, Field(discriminator="kind")]


class ModbusDeviceConfig(Model):
    """One Modbus device (one unit id on one bus)."""

    kind: Literal["modbus"]
    id: Name = Field(description="Device id, used in topics (telemetry/<id>)")
    bus: Name = Field(description="Id of the bus the device hangs on")
    unit_id: int = Field(ge=1, le=247, description="Modbus unit (slave) id, 1-247")
    interval: float = Field(10.0, ge=0.1, le=86400, description="Poll interval in seconds")
    offline_after: int = Field(
        3, ge=1, le=100, description="Consecutive failed polls before the device is offline"
    )
    backoff_max: float = Field(
        300.0, gt=0, le=3600, description="Longest pause between polls of an offline device (s)"
    )
    max_block: int = Field(
        125, ge=1, le=125, description="Most registers one read may cover (FC3/FC4 allow 125)"
    )
    max_gap: int = Field(
        0,
        ge=0,
        le=100,
        description="Unmapped registers a merged read may span; 0 for devices that refuse them",
    )
    disabled_retry: float = Field(
        600.0,
        ge=1,
        le=86400,
        description="How often a point the device refused (exception 0x01-0x03) is tried again (s)",
    )
    profile: Name | None = Field(None, description="Device profile the points come from")
    points: list[PointConfig] = Field(min_length=1, description="Points to read")
    description: str = Field("", max_length=200, description="Free text, e.g. the location")
    supplier: Supplier | None = Field(None, description=SUPPLIER)

    @property
    def active_points(self) -> list[PointConfig]:
        """Points that are enabled."""
        return [p for p in self.points if p.enabled]


class ProbeRegister(Model):
    """A register a probe reads that the profile does not poll (a model or id register)."""

    table: Table = Field("holding", description="Register table")
    address: int = Field(ge=0, le=65535, description="0-based register or bit address")
    type: DataType = Field("uint16", description="How the registers decode")
    word_order: Literal["big", "little"] = Field("big", description="As for a point")
    byte_order: Literal["big", "little"] = Field("big", description="As for a point")

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if (self.table in BIT_TABLES) != (self.type == "bool"):
            raise ValueError(f"type {self.type!r} does not fit table {self.table!r}")
        return self


class ProbeCheck(Model):
    """One value a scan reads from an unknown unit, and what makes it match this profile."""

    point: Name | None = Field(
        None, description="A point of the profile: read, decoded and scaled as it is polled"
    )
    raw: ProbeRegister | None = Field(
        None, description="Or a register the profile does not poll; its decoded, unscaled value"
    )
    range: tuple[float, float] | None = Field(
        None,
        description="Plausible [min, max] of the value; a point's check defaults to its range",
    )
    equals: float | Literal["unit"] | None = Field(
        None,
        description="The value a model or id register holds; 'unit': the unit id asked",
    )
    at_least: Name | None = Field(
        None,
        description="Another point of this probe the value never reads below (PM10 >= PM2.5)",
    )

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.point is None) == (self.raw is None):
            raise ValueError("a probe check names either a 'point' or a 'raw' register")
        if self.range is not None and self.equals is not None:
            raise ValueError("a probe check has a 'range' or an 'equals', not both")
        if self.raw is not None and self.range is None and self.equals is None:
            raise ValueError("a 'raw' check needs a 'range' or an 'equals'")
        if self.at_least is not None and self.point is None:
            raise ValueError("'at_least' compares points: use it on a 'point' check")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"range {list(self.range)}: min must not be above max")
        return self


class ProfileConfig(Model):
    """One Modbus profile file: the register map of a class of sensor."""

    name: Name = Field(description="The file name without .yaml")
    description: str = Field("", max_length=200, description="One line")
    vendor: str = Field("", max_length=200, description="Who makes it")
    model: str = Field("", max_length=200, description="Which models it covers")
    max_block: int | None = Field(None, ge=1, le=125, description="Read limit devices inherit")
    max_gap: int | None = Field(None, ge=0, le=100, description="Read limit devices inherit")
    notes: str = Field("", description="Free text for installers")
    points: list[PointConfig] = Field(min_length=1, description="The register map")
    probe: list[ProbeCheck] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="What a scan reads to guess that an unknown unit is of this profile",
    )

    @model_validator(mode="after")
    def _probe_names_points(self) -> Self:
        names = {p.name for p in self.points}
        probed = [c.point for c in self.probe or () if c.point is not None]
        for i, check in enumerate(self.probe or ()):
            if check.point is not None and check.point not in names:
                raise ValueError(f"probe[{i}].point: the profile has no point {check.point!r}")
            if check.at_least is not None and check.at_least not in probed:
                raise ValueError(
                    f"probe[{i}].at_least: {check.at_least!r} is not a point this probe reads"
                )
        if len(set(probed)) != len(probed):
            raise ValueError("probe: a point is checked twice")
        return self

    def probe_point(self, check: ProbeCheck) -> PointConfig:
        """Where ``check`` reads and how its value decodes, as a point (a ``raw`` check's
        point has no scale: its raw value counts)."""
        if check.point is not None:
            return next(p for p in self.points if p.name == check.point)
        reg = check.raw
        assert reg is not None  # the model holds one of the two
        return PointConfig(
            name=f"{reg.table}-{reg.address}",
            table=reg.table,
            address=reg.address,
            type=reg.type,
            word_order=reg.word_order,
            byte_order=reg.byte_order,
        )


def check_points(points: Sequence[PointConfig], where: str, max_block: int) -> list[str]:
    """Point names unique, values within ``max_block``, no two points sharing a register."""
    problems: list[str] = []
    names: dict[str, int] = {}
    spans: list[tuple[str, int, int, int]] = []
    for j, p in enumerate(points):
        if p.name in names:
            problems.append(f"{where}.points[{j}].name: duplicate point name {p.name!r}")
        names.setdefault(p.name, j)
        if not p.enabled:
            continue
        if p.count > max_block:  # a read may never split a value, nor exceed max_block
            problems.append(
                f"{where}.points[{j}].type: {p.type} needs {p.count} registers,"
                f" more than max_block {max_block}"
            )
        for table, start, end, k in spans:
            if table == p.table and start <= p.address + p.count - 1 and p.address <= end:
                last = p.address + p.count - 1
                problems.append(
                    f"{where}.points[{j}].address: {p.table} {p.address}..{last}"
                    f" overlaps points[{k}] ({start}..{end})"
                )
        spans.append((p.table, p.address, p.address + p.count - 1, j))
    return problems
