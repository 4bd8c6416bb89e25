"""In-process Modbus simulator of sensor devices, for the demo and the tests.

A :class:`Simulator` serves one or more :class:`SimulatedDevice` (one unit id each) over Modbus
TCP (``ModbusTcpServer``) or Modbus RTU (``ModbusSerialServer``, e.g. on one end of a socat pty
pair), using the pymodbus 3.16 simulator datastore (``pymodbus.simulator.SimDevice`` /
``SimData``; the deprecated ``ModbusDeviceContext`` classes are not used).

Contract:

* **Tables.** Each device has four separate tables (coils FC1/5/15, discrete inputs FC2, holding
  registers FC3/6/16, input registers FC4), built from the device's *enabled* points. Within a
  table, every address from the lowest mapped address to the highest mapped one answers;
  registers not covered by a point read 0, so merged block reads across small gaps work. Any
  request reaching outside that span, and any request to a table without points, is answered
  with exception 2 (ILLEGAL ADDRESS). Bit tables are stored 16 bits to a register, so their span
  is widened to whole 16-bit groups: unmapped bits inside the group read ``False``.
* **Unknown unit ids** are answered with exception 4 (DEVICE FAILURE), not with silence: pymodbus
  3.16 behaves so even with ``ignore_missing_devices=True`` (LIBRARIES.md P9). Test silence with a
  black-hole server instead.
* **Encoding** is the inverse of the gateway's decoding, ``value = raw * scale + offset``:
  ``raw = (value - offset) / scale``, rounded for integer types, packed big-endian with the
  point's ``word_order``, then each register byte-swapped when ``byte_order`` is ``little``
  (LIBRARIES.md P11). A value that does not fit the type raises ``ValueError``. Bool points are
  single coils or discrete inputs.
* **Values.** All points hold a value from the start (the server never serves the zeros of an
  empty datastore). Every ``interval`` seconds (a *tick*) each point that is not held gets a new
  value: the caller's function of the tick number if the device has one for it
  (:attr:`SimulatedDevice.functions`; written as returned, even outside the range), otherwise a
  bounded, mean-reverting random walk that stays inside the point's ``range`` after encoding.
  Points without a range keep their initial value; bool points flip now and then.
  :meth:`Simulator.set_value` writes a value at once and, by default, holds it (no more drift)
  until :meth:`Simulator.release`. A 32-bit value is written in one datastore update, so a client
  never reads half of an old and half of a new value.
* **Client writes** to mapped holding registers and coils are accepted (real transmitters keep
  their settings there); drifting points overwrite their own registers on the next tick.
* **Lifecycle.** ``async with Simulator(...)`` starts listening (and the tick task) before the
  body runs and always shuts the server down afterwards; an exception raised by a value
  function stops the ticks and is re-raised by :meth:`Simulator.stop`.

Modules: ``codec`` (values <-> registers), ``device`` (devices, values, random walks),
``datastore`` (the pymodbus tables and listen addresses), ``server`` (``Simulator``).
"""

from gateway.demo.sim.codec import decode_registers, encode_value
from gateway.demo.sim.device import SimulatedDevice, ValueFunction
from gateway.demo.sim.server import Simulator

__all__ = [
    "SimulatedDevice",
    "Simulator",
    "ValueFunction",
    "decode_registers",
    "encode_value",
]
