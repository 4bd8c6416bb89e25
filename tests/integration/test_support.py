"""The test support code against the real peers: mosquitto, socat ptys, pymodbus over RTU."""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import time
from pathlib import Path

import aiomqtt
import pytest
import serial
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.support.mosquitto import Mosquitto, MosquittoError, TlsFiles
from tests.support.ports import free_port
from tests.support.proxy import MqttProxy, packet_length
from tests.support.socat import PtyPair
from tests.support.subscriber import Recorder

# -- ports ------------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_packet_length() -> None:
    assert packet_length(b"") is None
    assert packet_length(b"\x30") is None
    assert packet_length(b"\xc0\x00") == 2  # PINGREQ
    assert packet_length(b"\x30\x03ab") is None
    assert packet_length(b"\x30\x03abcNEXT") == 5
    assert packet_length(b"\x30\x80\x01" + b"x" * 128) == 131  # two-byte remaining length


# -- mosquitto --------------------------------------------------------------------------------


async def test_publish_subscribe(mosquitto: Mosquitto) -> None:
    async with Recorder(mosquitto.host, mosquitto.port, "t/#") as rec:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for i in range(20):
                await client.publish(f"t/{i % 2}", f"m{i}".encode(), qos=1)
            await client.publish("t/retained", b"kept", qos=1, retain=True)
            await client.publish("other", b"not recorded", qos=1)
        got = await rec.wait_count(21, "t/")
    assert [m.payload for m in got[:20]] == [f"m{i}".encode() for i in range(20)]
    assert len(rec.on("t/0")) == 10
    assert got[20].topic == "t/retained"
    assert not got[20].retain  # live delivery: the retain flag is cleared
    assert all(m.qos == 1 for m in got)
    assert all(a.at <= b.at for a, b in itertools.pairwise(got))

    # a new subscriber gets the retained message with the flag set
    async with Recorder(mosquitto.host, mosquitto.port, "t/retained") as late:
        (msg,) = await late.wait_count(1)
    assert (msg.payload, msg.retain) == (b"kept", True)


async def test_wait_for_times_out_with_context(mosquitto: Mosquitto) -> None:
    async with Recorder(mosquitto.host, mosquitto.port, "nothing/#") as rec:
        with pytest.raises(TimeoutError, match="0 messages"):
            await rec.wait_count(1, timeout=0.2)


async def test_restart_on_same_port(mosquitto: Mosquitto) -> None:
    port, pid = mosquitto.port, mosquitto.pid
    async with Recorder(mosquitto.host, mosquitto.port, "r/#") as rec:
        async with aiomqtt.Client(mosquitto.host, port) as client:
            await client.publish("r/before", b"1", qos=1)
        await rec.wait_count(1)

        down_at = time.monotonic()
        await mosquitto.restart_async(down_for=0.5)
        assert time.monotonic() - down_at >= 0.5
        assert (mosquitto.port, mosquitto.is_running()) == (port, True)
        assert mosquitto.pid != pid

        await rec.wait_for(lambda _: rec.connects >= 2, timeout=10)  # it re-subscribed
        async with aiomqtt.Client(mosquitto.host, port) as client:
            await client.publish("r/after", b"2", qos=1)
        got = await rec.wait_count(2)
    assert [m.topic for m in got] == ["r/before", "r/after"]


def test_sync_restart_and_kill(mosquitto: Mosquitto) -> None:
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.is_running()
    assert mosquitto.port == port
    mosquitto.kill()
    assert not mosquitto.is_running()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((mosquitto.host, port), timeout=1).close()
    mosquitto.start()  # the same object starts again after a kill
    assert mosquitto.port == port
    assert "running" in mosquitto.log_text()


def test_port_taken_is_reported(tmp_path: Path, mosquitto: Mosquitto) -> None:
    clash = Mosquitto(tmp_path / "clash", port=mosquitto.port)
    try:
        with pytest.raises(MosquittoError, match="exited"):
            clash.start(timeout=5)
        assert not clash.is_running()
    finally:
        clash.stop()
    assert "Address already in use" in clash.log_text()


async def test_tls_listener_requires_client_cert(
    mosquitto_tls: Mosquitto, tls_files: TlsFiles
) -> None:
    broker = mosquitto_tls
    assert broker.tls_port is not None
    assert broker.tls_port != broker.port
    ctx = ssl.create_default_context(cafile=str(tls_files.ca_cert))
    ctx.load_cert_chain(tls_files.client_cert, tls_files.client_key)
    async with Recorder(broker.host, broker.port, "tls/#") as rec:
        async with aiomqtt.Client("localhost", broker.tls_port, tls_context=ctx) as client:
            await client.publish("tls/x", b"secure", qos=1)
        (msg,) = await rec.wait_count(1)
    assert msg.payload == b"secure"

    no_cert = ssl.create_default_context(cafile=str(tls_files.ca_cert))
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            "127.0.0.1", broker.tls_port, tls_context=no_cert, timeout=1
        ) as client:
            await client.publish("tls/x", b"should not arrive", qos=1, timeout=1)


# -- proxy ------------------------------------------------------------------------------------


async def test_proxy_counts_publishes_and_abort_fires_will(
    mosquitto: Mosquitto, mqtt_proxy: MqttProxy
) -> None:
    will = aiomqtt.Will("gw/test/status", b"offline", qos=1, retain=True)
    async with Recorder(mosquitto.host, mosquitto.port, "gw/#") as rec:
        client = aiomqtt.Client(mqtt_proxy.host, mqtt_proxy.port, will=will, timeout=5)
        async with client:
            for i in range(5):
                await client.publish("gw/test/data", str(i).encode(), qos=1)
            await client.publish("gw/test/status", b"online", qos=1, retain=True)
            assert mqtt_proxy.publish_count == 6
            mqtt_proxy.abort_all()
            with pytest.raises(aiomqtt.MqttError):  # the client sees the link drop
                await anext(client.messages)
        got = await rec.wait_for(
            lambda msgs: any(m.payload == b"offline" for m in msgs), timeout=10
        )
    assert [m.payload for m in got if m.topic == "gw/test/status"] == [b"online", b"offline"]
    assert mqtt_proxy.connections == 1
    assert mqtt_proxy.dup_publish_count == 0


async def test_proxy_drop_pubacks(mosquitto: Mosquitto, mqtt_proxy: MqttProxy) -> None:
    async with Recorder(mosquitto.host, mosquitto.port, "p/#") as rec:
        async with aiomqtt.Client(mqtt_proxy.host, mqtt_proxy.port) as client:
            mqtt_proxy.drop_pubacks(True)
            started = time.monotonic()
            with pytest.raises(aiomqtt.MqttError, match="timed out"):
                await client.publish("p/x", b"unacked", qos=1, timeout=0.5)
            assert time.monotonic() - started >= 0.5
            assert mqtt_proxy.dropped_pubacks == 1
            await rec.wait_count(1)  # the broker got it; only the ack was lost
            mqtt_proxy.drop_pubacks(False)
            await client.publish("p/x", b"acked", qos=1, timeout=5)
        got = await rec.wait_count(2)
    assert [m.payload for m in got] == [b"unacked", b"acked"]


async def test_proxy_block_blackholes_new_connections(mqtt_proxy: MqttProxy) -> None:
    async with aiomqtt.Client(mqtt_proxy.host, mqtt_proxy.port) as established:
        mqtt_proxy.block(True)
        started = time.monotonic()
        with pytest.raises(aiomqtt.MqttError, match="timed out"):
            async with aiomqtt.Client(mqtt_proxy.host, mqtt_proxy.port, timeout=0.5):
                pass
        assert time.monotonic() - started >= 0.5
        await established.publish("b/x", b"still works", qos=1, timeout=5)
        mqtt_proxy.block(False)
        async with aiomqtt.Client(mqtt_proxy.host, mqtt_proxy.port, timeout=5) as again:
            await again.publish("b/x", b"open again", qos=1, timeout=5)
    assert mqtt_proxy.connections == 3
    assert mqtt_proxy.publish_count == 2


async def test_proxy_refuse_then_reopen_on_same_port(mqtt_proxy: MqttProxy) -> None:
    port = mqtt_proxy.port
    async with aiomqtt.Client(mqtt_proxy.host, port) as established:
        await mqtt_proxy.refuse(True)
        started = time.monotonic()
        with pytest.raises(aiomqtt.MqttError, match="refused"):
            async with aiomqtt.Client(mqtt_proxy.host, port, timeout=5):
                pass
        assert time.monotonic() - started < 1.0
        await established.publish("b/x", b"still works", qos=1, timeout=5)
        await mqtt_proxy.refuse(False)
        assert mqtt_proxy.port == port
        async with aiomqtt.Client(mqtt_proxy.host, port, timeout=5) as again:
            await again.publish("b/x", b"open again", qos=1, timeout=5)
    assert mqtt_proxy.connections == 2


# -- socat pty pair ---------------------------------------------------------------------------


def test_pty_pair_carries_bytes_both_ways(pty_pair: PtyPair) -> None:
    assert pty_pair.a.exists()
    assert pty_pair.b.exists()
    assert str(os.getpid()) in pty_pair.a.name
    with (
        serial.Serial(str(pty_pair.a), 19200, timeout=2) as a,
        serial.Serial(str(pty_pair.b), 19200, timeout=2) as b,
    ):
        payload = bytes(range(256))  # raw: no line discipline may touch any byte
        a.write(payload)
        assert b.read(len(payload)) == payload
        b.write(b"\x00\xffback\r\n")
        assert a.read(8) == b"\x00\xffback\r\n"
    # an end can be closed and opened again while socat runs
    with (
        serial.Serial(str(pty_pair.b), 19200, timeout=2) as b,
        serial.Serial(str(pty_pair.a), 19200, timeout=2) as a,
    ):
        b.write(b"again")
        assert a.read(5) == b"again"


def test_pty_pair_stop_removes_links(tmp_path: Path) -> None:
    pair = PtyPair(tmp_path)
    pair.start()
    try:
        assert pair.is_running()
    finally:
        pair.stop()
    assert not pair.is_running()
    assert not pair.a.exists()
    assert not pair.b.exists()


# -- pymodbus RTU over the pty pair (LIBRARIES.md §3.5) ----------------------------------------


async def test_modbus_rtu_over_pty_pair(pty_pair: PtyPair) -> None:
    devices = [
        SimDevice(
            id=1,
            simdata=[
                SimData(address=0, count=10, values=0, datatype=DataType.REGISTERS),
                SimData(address=100, values=230.5, datatype=DataType.FLOAT32),
                SimData(address=102, values=123456, datatype=DataType.UINT32),
            ],
        ),
        SimDevice(id=2, simdata=[SimData(address=0, values=[7, 8], datatype=DataType.REGISTERS)]),
    ]
    server = ModbusSerialServer(devices, port=str(pty_pair.a), framer=FramerType.RTU)
    await server.serve_forever(background=True)
    try:
        client = AsyncModbusSerialClient(
            str(pty_pair.b), framer=FramerType.RTU, baudrate=19200, timeout=1, retries=1
        )
        try:
            assert await client.connect()
            rr = await client.read_holding_registers(100, count=4, device_id=1)
            assert not rr.isError()
            dt = client.DATATYPE
            assert rr.registers[:2] == [17254, 32768]
            assert client.convert_from_registers(rr.registers[:2], dt.FLOAT32) == 230.5
            assert client.convert_from_registers(rr.registers[2:], dt.UINT32) == 123456

            wr = await client.write_register(3, 42, device_id=1)
            assert not wr.isError()
            rr = await client.read_holding_registers(0, count=4, device_id=1)
            assert rr.registers == [0, 0, 0, 42]

            rr = await client.read_holding_registers(0, count=2, device_id=2)
            assert rr.registers == [7, 8]
            rr = await client.read_holding_registers(500, count=1, device_id=2)
            assert rr.isError()  # undefined address: an exception response, returned
        finally:
            client.close()
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated
