"""Commissioning end to end: ``cgw scan``, ``cgw read`` and ``cgw devices`` against a running
daemon on an RS-485 line (a socat pty pair) whose two sensors have their unit ids swapped, then
standalone once the daemon has stopped. The commands are the ones docs/commissioning.md shows."""

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.sim import Simulator
from tests.e2e.test_operate import get, metric
from tests.support.daemon import REPO, Daemon, run_cgw, write_config
from tests.support.docs import commands, readme_commands
from tests.support.ports import free_ports
from tests.support.sensors import as_configured, crossed, only_they_answer
from tests.support.socat import PtyPair

pytestmark = pytest.mark.slow
TOKEN = "0123456789abcdef" * 2
DOC = REPO / "docs" / "commissioning.md"


def documented() -> list[list[str]]:
    """The ``cgw`` commands of the page's first shell block, without their comments."""
    return commands(DOC.name)


def test_the_readme_shows_the_commands_this_test_runs() -> None:
    verbs = readme_commands("devices|scan|read")
    assert len(verbs) == 3
    assert sorted(verbs) == sorted(documented())


async def cgw(config: Path, *argv: str) -> tuple[int, str, str]:
    """``cgw ARGV -c CONFIG`` as a process; the test's loop keeps serving the bus meanwhile."""
    return await run_cgw(*argv, "-c", str(config))


def site(tmp_path: Path, line: Path) -> dict[str, Any]:
    token = tmp_path / "api.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    broker, api, monitor = free_ports(3)  # nothing listens on the broker's: no uplink needed
    rtu = {"kind": "modbus_rtu", "id": "rs485-1", "port": str(line), "baudrate": 19200}
    rtu.update(timeout=0.3, retries=0)
    doc = as_configured(
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": str(tmp_path / "b.db"), "quota": "16MiB", "reserve": "1MiB"},
            "upstream": {"mqtt": {"host": "127.0.0.1", "port": broker, "reconnect_max": 2.0}},
            "buses": [rtu],
            "api": {"port": api, "token_file": str(token)},
            "monitor": {"port": monitor},
        },
        "rs485-1",
    )
    for device in doc["devices"]:
        device["interval"] = 0.5
    return doc


async def test_the_documented_commands_through_the_daemon_then_standalone(
    tmp_path: Path, pty_pair: PtyPair, daemon: Daemon
) -> None:
    doc = site(tmp_path, pty_pair.b)
    config = write_config(daemon.config, doc)
    async with Simulator.rtu(crossed(), str(pty_pair.a), 19200, interval=None) as sim:
        only_they_answer(sim)
        daemon.start()
        await daemon.wait_log("disabled")  # th-1 has polled the noise sensor on its unit 3
        shown: dict[str, str] = {}
        for argv in documented():
            assert argv[0] == "cgw"
            rc, out, err = await cgw(config, *argv[1:])
            assert (rc, err) == (0, ""), (argv, out, err)  # through the API: no standalone line
            shown[argv[1]] = out

        assert "2 of 8 unit ids answer" in shown["scan"]
        assert re.search(r"^2 +registers +th-rs485 ", shown["scan"], re.MULTILINE)
        assert re.search(r"^3 +registers +noise-rs485 ", shown["scan"], re.MULTILINE)
        assert re.search(r"humidity +105\.0 +%RH +bad +IMPLAUSIBLE", shown["read"])
        assert re.search(r"holding 0 +1050 \(0x041A\) +humidity", shown["read"])
        assert re.search(r"^noise-1 +modbus, bus rs485-1, profile noise-rs485: online since",
                         shown["devices"], re.MULTILINE)  # fmt: skip
        assert re.search(r"noise +25\.0 +dB\(A\) +bad +IMPLAUSIBLE", shown["devices"])
        assert "    temperature: disabled (exception 0x02 at holding 1)" in shown["devices"]
        actions = [e["msg"] for e in daemon.logs() if e["msg"].startswith("action:")]
        assert any(re.fullmatch(r"action: scan of bus rs485-1, units 1-8, asked by .+ \(cgw\)"
                                r" \(local API\)", a) for a in actions), actions  # fmt: skip
        _, text = await get(f"http://127.0.0.1:{doc['monitor']['port']}/metrics")
        assert metric(text, "cgw_device_implausible_total", device="noise-1") >= 1
        assert metric(text, "cgw_device_implausible_total", device="th-1") >= 1

        rc, _ = daemon.terminate()
        assert rc == 0
        rc, out, err = await cgw(config, "read", "noise-1")
        assert rc == 0, err
        assert err.startswith("standalone: the gateway's local API does not answer at 127.0.0.1:")
        assert len(err.splitlines()) == 1
        assert re.search(r"noise +25\.0 +dB\(A\) +bad +IMPLAUSIBLE", out)
        rc, out, err = await cgw(config, "scan", "rs485-1", "--units", "1-4", "--json")
        assert rc == 0, err
        assert "standalone" in err
        assert '"profile": "th-rs485"' in out
        rc, out, err = await cgw(config, "devices")
        assert (rc, out) == (1, "")
        assert err.startswith("the gateway is not running")
