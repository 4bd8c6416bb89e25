"""The local alarm API over real HTTP, on a real alarm engine and store.

Driven two ways: by an aiohttp client, and by ``cgw alarms`` (``gateway.cli.alarms.run``, sync
urllib, run in a thread) with a gateway config file pointing at the running server.
"""

import argparse
import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest

from gateway.cli import alarms as cli_alarms
from gateway.config.api import ApiConfig
from gateway.core.clock import ManualClock
from gateway.core.errors import ConfigError
from gateway.core.messages import ContactEvent
from gateway.ops.api import LocalApi
from tests.support.api import TOKEN, Harness, running, write_config
from tests.support.ports import free_port


def press(h: Harness, pressed: bool) -> None:
    h.engine.contact(ContactEvent("btn-3f", "b1", pressed, 1_700_000_000.0 + pressed))


# -- over HTTP --------------------------------------------------------------------------------


async def test_list_ack_and_reset_over_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as h:
        assert (await h.call("GET", "/v1/health", token=None))[:2] == (200, {"ok": True})
        assert (await h.call("GET", "/v1/alarms"))[:2] == (200, [])
        press(h, True)
        await h.message(state="notified")  # the "log" channel confirms at once
        status, alarms, _ = await h.call("GET", "/v1/alarms")
        assert status == 200
        (alarm,) = alarms
        assert alarm == {
            "id": alarm["id"],
            "state": "notified",
            "severity": "critical",
            "kind": "contact",
            "device": "btn-3f",
            "input": "b1",
            "message": "emergency input b1 pressed",
            "latched": True,
            "active": True,
            "raised_at": "2023-11-14T22:13:21.000Z",
            "acked_at": None,
            "acked_by": None,
            "time_to_ack_s": None,
            "repeats": 0,
            "escalation_step": 1,
        }
        ack = f"/v1/alarms/{alarm['id']}/ack"
        reset = f"/v1/alarms/{alarm['id']}/reset"

        status, body, _ = await h.call("POST", ack, json={"by": "guard-wang"})
        assert (status, body["changed"]) == (200, True)
        acked = body["alarm"]
        assert (acked["state"], acked["acked_by"]) == ("acknowledged", "guard-wang")
        assert acked["time_to_ack_s"] >= 0
        assert datetime.fromisoformat(acked["acked_at"]) >= datetime.fromisoformat(
            acked["raised_at"]
        )
        status, body, _ = await h.call("POST", ack, json={"by": "li"})  # a second ack: no change
        assert (status, body["changed"], body["alarm"]["acked_by"]) == (200, False, "guard-wang")

        status, body, _ = await h.call("POST", reset, json={"by": "guard-wang"})
        assert status == 409
        assert body["error"].endswith("still active")
        _, alarms, _ = await h.call("GET", "/v1/alarms")
        assert [(a["id"], a["state"]) for a in alarms] == [(alarm["id"], "acknowledged")]

        press(h, False)
        await h.message(active=False)
        status, body, _ = await h.call("POST", reset, json={"by": "guard-wang"})
        assert (status, body["alarm"]["state"], body["changed"]) == (200, "cleared", True)
        assert (await h.call("GET", "/v1/alarms"))[:2] == (200, [])

        # the response-time figure, over the closed alarm too
        status, report, _ = await h.call("GET", "/v1/report?days=36500")
        assert status == 400  # more than ten years is refused
        status, report, _ = await h.call("GET", "/v1/report?days=3650")
        assert status == 200
        assert report["all"]["alarms"] == 1
        assert report["all"]["acknowledged"] == 1
        assert report["all"]["time_to_ack_p50_s"] == acked["time_to_ack_s"]
        # acknowledged within the plan's 8 minutes? (this test's clocks are years apart)
        within = int(acked["time_to_ack_s"] <= 480)
        assert report["all"]["within_target"] == within
        assert report["all"]["within_target_share"] == float(within)
        assert report["critical"]["alarms"] == 1
        assert report["warning"] == {
            "alarms": 0,
            "acknowledged": 0,
            "unacknowledged_open": 0,
            "time_to_ack_p50_s": None,
            "time_to_ack_p90_s": None,
            "time_to_ack_max_s": None,
            "target_s": 480.0,
            "within_target": 0,
            "within_target_share": None,
            "escalation_exhausted": 0,
        }
        assert (report["late"], report["late_total"]) == ([], 0) if within else (
            [{"id": alarm["id"], "device": "btn-3f", "severity": "critical",
              "raised_at": alarm["raised_at"], "time_to_ack_s": acked["time_to_ack_s"],
              "acked_by": "guard-wang"}],
            1,
        )  # fmt: skip
    assert f"alarm {alarm['id']} acknowledged by guard-wang (local API)" in caplog.messages
    assert f"alarm {alarm['id']} reset by guard-wang (local API)" in caplog.messages
    assert TOKEN not in caplog.text


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for a condition on the server running in this process."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - the server's counters have no event
            await asyncio.sleep(0.01)


async def test_token_required_and_failures_only_slowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, ManualClock(), fail_delay=0.5, max_waiting=3) as h:
        status, body, headers = await h.call("GET", "/v1/alarms", token=None)
        assert (status, body, headers["WWW-Authenticate"]) == (
            401,
            {"error": "missing or wrong bearer token"},
            "Bearer",
        )
        bad = [
            asyncio.create_task(h.call("GET", "/v1/alarms", token="wrong" * 4)) for _ in range(6)
        ]
        await until(lambda: h.api.failed_auth == 7)
        # three failures wait their turn, three more got 429: the right token is served at once
        for _ in range(3):
            assert (await h.call("GET", "/v1/alarms"))[:2] == (200, [])
        assert not all(t.done() for t in bad)
        answers = [
            (s, b["error"], hd.get("Retry-After")) for s, b, hd in await asyncio.gather(*bad)
        ]
        assert (
            sorted(answers)
            == [(401, "missing or wrong bearer token", None)] * 3
            + [(429, "too many failed authentications; try again later", "2")] * 3
        )
        assert (h.api.failed_auth, h.api.throttled) == (7, 3)
        assert (await h.call("GET", "/v1/health", token=None))[0] == 200
        assert (await h.call("GET", "/v1/alarms", token=None))[0] == 401
    throttled = [r for r in caplog.records if "failed authentications waiting" in r.getMessage()]
    assert [r.levelno for r in throttled] == [logging.WARNING]
    assert "wrong" not in caplog.text


async def test_bad_requests_get_clear_errors(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        for action in ("ack", "reset"):
            status, body, _ = await h.call("POST", f"/v1/alarms/nope/{action}", json={"by": "x"})
            assert (status, body) == (404, {"error": "no open alarm 'nope'"})
        press(h, True)
        await h.message(state="notified")
        (alarm,) = h.engine.open_alarms()
        ack = f"/v1/alarms/{alarm.id}/ack"
        not_json, not_by = (
            'the body must be JSON like {"by": "<name>"}',
            'the body must be a JSON object with one key, "by"',
        )
        cases = [
            (b"{not json", not_json),
            (b"", not_json),
            (b"\xff", not_json),
            (b"[" * 3000, not_json),  # too deep for the parser, yet under 4 KiB
            (b"[]", not_by),
            (b'{"by": "x", "note": "y"}', not_by),
        ]
        for data, error in cases:
            assert (await h.call("POST", ack, data=data))[:2] == (400, {"error": error})
        for by in ["", "   ", "x" * 65, "a\nb", 7]:
            status, body, _ = await h.call("POST", ack, json={"by": by})
            assert (status, body["error"]) == (
                400,
                '"by" must be a name of 1 to 64 printable characters',
            )

        status, body, _ = await h.call("POST", ack, json={"by": "x" * 5000})
        assert (status, body) == (413, {"error": "the request body is larger than 4096 bytes"})

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
            for _ in range(5):
                yield b" " * 1024

        assert (await h.call("POST", ack, data=chunks()))[:2] == (
            413,
            {"error": "the request body is larger than 4096 bytes"},
        )
        assert (await h.call("GET", "/v1/nothing"))[:2] == (404, {"error": "Not Found"})
        assert (await h.call("GET", "/v1/nothing", token=None))[0] == 401
        status, body, headers = await h.call("GET", ack)
        assert (status, body, headers["Allow"]) == (405, {"error": "Method Not Allowed"}, "POST")
        assert h.engine.open_alarms()[0].state.value == "notified"  # none of it changed anything


# -- through cgw alarms -----------------------------------------------------------------------


def cgw(*argv: str) -> int:
    """``cgw alarms <argv>`` with the real argument parser of the subcommand."""
    parser = argparse.ArgumentParser(prog="cgw")
    cli_alarms.add_parser(parser.add_subparsers(dest="command", required=True))
    return cli_alarms.run(parser.parse_args(["alarms", *argv]))


async def test_cli_lists_acknowledges_and_resets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running(tmp_path) as h:
        cfg = str(h.config)
        assert await asyncio.to_thread(cgw, "list", "-c", cfg) == 0
        assert capsys.readouterr().out == "no open alarms\n"
        press(h, True)
        await h.message(state="notified")
        (alarm,) = h.engine.open_alarms()

        assert await asyncio.to_thread(cgw, "list", "-c", cfg) == 0
        head, row, total = capsys.readouterr().out.splitlines()
        assert head.split() == [
            *("ID", "STATE", "SEVERITY", "DEVICE", "INPUT", "NOW", "RAISED", "ACKED", "BY"),
            "MESSAGE",
        ]
        cells = row.split()  # the RAISED column (local time) is two words
        assert cells[:6] == [alarm.id, "notified", "critical", "btn-3f", "b1", "active"]
        assert cells[8:] == ["-", "emergency", "input", "b1", "pressed"]
        assert total == "1 open alarm"

        assert await asyncio.to_thread(cgw, "ack", alarm.id, "--by", "guard-wang", "-c", cfg) == 0
        assert capsys.readouterr().out.startswith(f"alarm {alarm.id} acknowledged by guard-wang, ")
        assert await asyncio.to_thread(cgw, "list", "-c", cfg) == 0
        assert " acknowledged " in capsys.readouterr().out

        assert await asyncio.to_thread(cgw, "reset", alarm.id, "--by", "guard-wang", "-c", cfg) == 1
        err = capsys.readouterr().err
        assert err.startswith("the gateway refused: ")
        assert err.endswith("still active (HTTP 409)\n")
        assert [a.id for a in h.engine.open_alarms()] == [alarm.id]

        press(h, False)
        await h.message(active=False)
        assert await asyncio.to_thread(cgw, "reset", alarm.id, "--by", "guard-wang", "-c", cfg) == 0
        assert capsys.readouterr().out == f"alarm {alarm.id} reset by guard-wang: cleared\n"
        assert await asyncio.to_thread(cgw, "list", "-c", cfg) == 0
        assert capsys.readouterr().out == "no open alarms\n"

        # the press is from 2023, the acknowledgement from today: years past the 8 minutes
        assert await asyncio.to_thread(cgw, "report", "--days", "3650", "-c", cfg) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].split()[-6:] == ["target", "in", "time", "share", "ran", "out"]
        assert lines[2].split()[:4] == ["all", "1", "1", "0"]
        assert lines[2].split()[-4:] == ["480.0", "0", "0.0%", "0"]  # none within the target
        assert lines[6] == "not acknowledged within the target (1):"
        assert lines[7].split() == ["ID", "SEVERITY", "DEVICE", "RAISED", "TOOK", "ACKED", "BY"]
        late = lines[8].split()
        assert (late[:3], late[-2:]) == ([alarm.id, "critical", "btn-3f"], ["s", "guard-wang"])
        assert int(late[-3]) > 480  # TOOK, in seconds

        assert await asyncio.to_thread(cgw, "ack", "a-gone", "--by", "guard-wang", "-c", cfg) == 1
        assert capsys.readouterr().err == (
            "the gateway refused: no open alarm 'a-gone' (HTTP 404)\n"
        )


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "api.token"
    path.write_text(TOKEN, encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def test_cli_without_api_section_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cgw("list", "-c", str(write_config(tmp_path, None))) == 2
    assert "has no 'api' section" in capsys.readouterr().err


def test_cli_says_when_the_gateway_cannot_be_reached(
    tmp_path: Path, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    cfg = write_config(tmp_path, {"port": port, "token_file": str(token_file)})
    assert cgw("ack", "a1", "--by", "guard-wang", "-c", str(cfg)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cannot reach the gateway's local API at http://127.0.0.1:{port}/")
    assert "(is the gateway running?)" in err


def test_cli_refuses_a_bad_name(tmp_path: Path, token_file: Path) -> None:
    cfg = write_config(tmp_path, {"token_file": str(token_file)})
    with pytest.raises(SystemExit) as exc:
        cgw("ack", "a1", "--by", "", "-c", str(cfg))
    assert exc.value.code == 2


# -- connections: cap and timeouts ------------------------------------------------------------


async def idle_connection(h: Harness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert h.session._base_url is not None
    return await asyncio.open_connection(h.session._base_url.host, h.session._base_url.port)


async def closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    async with asyncio.timeout(5):
        return await reader.read()


async def test_at_the_cap_the_oldest_idle_connection_makes_room(tmp_path: Path) -> None:
    limits = {"max_connections": 3, "header_timeout": 60}
    async with running(tmp_path, limits=limits, fail_delay=0.3) as h:
        conns = [await idle_connection(h) for _ in range(3)]
        await until(lambda: h.api.gate.open == 3)
        fourth = await idle_connection(h)
        assert await closed(conns[0][0]) == b""  # the oldest, with no request, went
        assert (await h.call("GET", "/v1/alarms"))[:2] == (200, [])  # and so did the next
        assert await closed(conns[1][0]) == b""
        assert (h.api.gate.accepted, h.api.gate.evicted, h.api.gate.refused) == (5, 2, 0)
        for _, writer in [*conns, fourth]:
            writer.close()
        await until(lambda: h.api.gate.open == 1)  # the session's keep-alive connection
        # every connection busy (failures waiting for their answer): a new one is refused
        bad = [
            asyncio.create_task(h.call("GET", "/v1/alarms", token="wrong" * 4)) for _ in range(3)
        ]
        await until(lambda: h.api.failed_auth == 3)
        assert h.api.gate.open == 3
        reader, writer = await idle_connection(h)
        assert await closed(reader) == b""
        writer.close()
        assert (h.api.gate.accepted, h.api.gate.evicted, h.api.gate.refused) == (7, 2, 1)
        assert [s for s, _, _ in await asyncio.gather(*bad)] == [401, 401, 401]


async def test_slow_and_idle_connections_are_closed(tmp_path: Path) -> None:
    limits = {"header_timeout": 0.3, "idle_timeout": 0.6}
    async with running(tmp_path, limits=limits) as h:
        silent = await idle_connection(h)
        slow = await idle_connection(h)
        slow[1].write(b"GET /v1/health HTTP/1.1\r\nHost: gw\r\n")  # never finished
        served = await idle_connection(h)
        served[1].write(b"GET /v1/health HTTP/1.1\r\nHost: gw\r\n\r\n")
        began = asyncio.get_running_loop().time()
        assert await closed(silent[0]) == b""
        assert await closed(slow[0]) == b""
        assert h.api.gate.timed_out == 2
        answer = await closed(served[0])  # the answer, then closed once idle for 0.6 s
        assert answer.startswith(b"HTTP/1.1 200 OK")
        assert answer.endswith(b'{"ok": true}')
        assert asyncio.get_running_loop().time() - began >= 0.5
        assert (h.api.gate.timed_out, h.api.gate.evicted) == (2, 0)
        for _, writer in (silent, slow, served):
            writer.close()


async def test_a_port_already_taken_is_a_config_error_naming_the_section(
    tmp_path: Path, token_file: Path
) -> None:
    import socket

    from gateway.config.monitor import MonitorConfig
    from gateway.ops.monitor import Monitor
    from tests.unit.test_ops import healthy

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        api = LocalApi(
            ApiConfig.model_validate(
                {"host": "127.0.0.1", "port": port, "token_file": str(token_file)}
            ),
            engine=None,  # type: ignore[arg-type]  # never reached: the port is refused first
        )
        with pytest.raises(ConfigError, match=f"api: cannot listen on 127.0.0.1:{port}: "):
            await api.__aenter__()
        monitor = Monitor(MonitorConfig.model_validate({"port": port}), healthy)
        with pytest.raises(ConfigError, match=f"monitor: cannot listen on 127.0.0.1:{port}: "):
            await monitor.__aenter__()
