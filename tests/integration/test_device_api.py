"""The local API's device routes over real HTTP: device states, a read now, a bus scan.

The commissioner is the one the daemon uses, here over buses it opens itself, against a
pymodbus server holding two sensors whose unit ids are swapped.
"""

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.config import validate
from gateway.core.devices import DeviceStates
from gateway.core.messages import Quality, Reading, Sample
from gateway.demo.sim import Simulator
from gateway.runtime.commission import ModbusCommissioner
from tests.support.api import running
from tests.support.sensors import as_configured, crossed, only_they_answer

PANEL = {"kind": "gpio", "id": "panel", "inputs": [{"name": "call_101", "pin": 17}]}


def site(tmp_path: Path, port: int) -> dict[str, Any]:
    doc = {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "unused.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "buses": [
            {"kind": "modbus_tcp", "id": "tcp-1", "host": "127.0.0.1", "port": port, "retries": 0}
        ],
    }
    configured = as_configured(doc, "tcp-1")
    return {**configured, "devices": [*configured["devices"], PANEL]}


async def test_the_device_routes_need_the_token_and_say_what_is_unknown(tmp_path: Path) -> None:
    states = DeviceStates()
    states.register("noise-1", "modbus", "tcp-1", "noise-rs485")
    cfg = validate(site(tmp_path, 1), tmp_path)
    desk = ModbusCommissioner(lambda: cfg, tmp_path)
    async with running(tmp_path, devices=states, commissioner=desk) as h:
        for method, path in [
            ("GET", "/v1/devices"),
            ("GET", "/v1/devices/noise-1"),
            ("POST", "/v1/devices/noise-1/read"),
            ("POST", "/v1/buses/tcp-1/scan"),
        ]:
            status, body, _ = await h.call(method, path, token=None)
            assert (status, body) == (401, {"error": "missing or wrong bearer token"}), path
        assert (await h.call("GET", "/v1/devices/ghost"))[:2] == (
            404,
            {"error": "no device 'ghost'"},
        )
        status, body, _ = await h.call("POST", "/v1/devices/ghost/read", json={})
        assert (status, body) == (404, {"error": "no device 'ghost' is configured"})
        status, body, _ = await h.call("POST", "/v1/buses/rs485-9/scan", json={"units": "1"})
        assert (status, body) == (404, {"error": "no bus 'rs485-9' is configured"})
        status, body, _ = await h.call("POST", "/v1/devices/panel/read")
        assert status == 400
        assert "only Modbus devices" in body["error"]
        for bad, why in [
            ({"units": "0-300"}, '"units": '),
            ({"units": "1-x"}, '"units": '),
            ({"timeout": 9}, '"timeout" must be'),
            ({"unit": "1"}, "the body must be a JSON object"),
            ({"by": ""}, '"by" must be a name'),
        ]:
            status, body, _ = await h.call("POST", "/v1/buses/tcp-1/scan", json=bad)
            assert status == 400, bad
            assert body["error"].startswith(why), body
        status, body, _ = await h.call("POST", "/v1/devices/noise-1/read", json={"raw": "yes"})
        assert (status, body) == (400, {"error": '"raw" must be true or false'})
        # the bus cannot be opened: nothing listens on port 1
        status, body, _ = await h.call("POST", "/v1/devices/noise-1/read")
        assert status == 503
        assert "cannot connect to bus tcp-1" in body["error"]


async def test_devices_read_and_scan_show_the_crossed_sensors_and_log_who_asked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.ops.device_api")
    async with Simulator(crossed(), port=0, interval=None) as sim:
        only_they_answer(sim)
        cfg = validate(site(tmp_path, sim.port), tmp_path)
        states = DeviceStates()
        states.register("noise-1", "modbus", "tcp-1", "noise-rs485")
        states.register("panel", "gpio")
        states.availability("noise-1", True, 1_800_000_000.0, "ok")
        states.sample(Sample("noise-1", 1_800_000_000.5,
                             (Reading("noise", 25.0, "dB(A)", Quality.BAD),)))  # fmt: skip
        desk = ModbusCommissioner(lambda: cfg, tmp_path)
        async with running(tmp_path, devices=states, commissioner=desk) as h:
            status, body, _ = await h.call("GET", "/v1/devices")
            assert status == 200
            assert [d["id"] for d in body["devices"]] == ["noise-1", "panel"]
            status, view, _ = await h.call("GET", "/v1/devices/noise-1")
            assert (status, view["bus"], view["profile"]) == (200, "tcp-1", "noise-rs485")
            assert view["points"][0]["implausible"] is True
            assert view["counters"] == {"implausible": 1}
            assert body["devices"][1]["bus"] is None

            status, read, _ = await h.call("POST", "/v1/devices/th-1/read",
                                           json={"raw": True, "by": "installer-li"})  # fmt: skip
            assert status == 200
            assert (read["device"], read["bus"], read["unit"]) == ("th-1", "tcp-1", 3)
            assert read["points"] == [
                {"name": "humidity", "value": 105.0, "unit": "%RH", "quality": "bad",
                 "implausible": True},
                {"name": "temperature", "value": None, "unit": "degC", "quality": "comm_error",
                 "implausible": False},
            ]  # fmt: skip
            blocks = [
                (b["address"], b["count"], b["registers"], b["error"]) for b in read["blocks"]
            ]
            refused = "exception 0x02"
            assert blocks == [(0, 2, None, refused), (0, 1, [1050], None), (1, 1, None, refused)]
            assert read["blocks"][1]["hex"] == ["0x041A"]
            status, plain, _ = await h.call("POST", "/v1/devices/noise-1/read")
            assert status == 200
            assert "blocks" not in plain
            assert plain["points"][0]["value"] == 25.0

            first = asyncio.create_task(
                h.call("POST", "/v1/buses/tcp-1/scan", json={"units": "1-8", "by": "installer-li"})
            )
            routes = h.api.devices
            assert routes is not None
            async with asyncio.timeout(5):
                while "tcp-1" not in routes.scanning:  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.01)  # until the first scan is under way
            second = await h.call("POST", "/v1/buses/tcp-1/scan", json={"units": "9"})
            assert second[0] == 409
            assert second[1]["error"] == "a scan of bus tcp-1 runs already; wait for its answer"
            status, scan, _ = await first
    assert status == 200
    assert (scan["bus"], scan["asked"], scan["wanted"], scan["complete"]) == ("tcp-1", 8, 8, True)
    assert [(f["unit"], f["profile"]) for f in scan["found"]] == [
        (2, "th-rs485"),
        (3, "noise-rs485"),
    ]
    assert not routes.scanning
    actions = [r.getMessage() for r in caplog.records if r.getMessage().startswith("action:")]
    assert actions == [
        "action: read of device th-1 asked by installer-li (local API)",
        "action: read of device noise-1 asked by a local API caller (local API)",
        "action: scan of bus tcp-1, units 1-8, asked by installer-li (local API)",
    ]
    assert any(
        "scan of bus tcp-1: 2 of 8 unit ids answer" in r.getMessage() for r in caplog.records
    )
