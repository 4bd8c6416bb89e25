"""The availability report over the local API and ``cgw report``, through the running API and
from the store file once it is stopped: the commands are the ones docs/reports.md shows.

The history is the month of ``tests.support.availability`` (its figures are checked by hand in
``test_availability.py``); here the two ways of reading it must agree to the byte.
"""

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from gateway.reports.recorder import Recorder
from gateway.reports.service import ReportService
from gateway.store import Store
from gateway.store.db import Schema, open_db
from gateway.store.schema import STORE, unclean
from tests.support.api import running
from tests.support.availability import ZONE, Site, november
from tests.support.daemon import REPO
from tests.support.docs import block, commands, readme_commands

FIXTURES = REPO / "tests" / "fixtures"


def documented() -> list[list[str]]:
    return commands("reports.md")


def test_the_readme_shows_a_command_this_test_runs() -> None:
    assert readme_commands("report") == documented()[:1]


def config(tmp_path: Path, api: dict[str, Any] | None) -> Path:
    doc: dict[str, Any] = {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "b.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "alarms": {"timezone": ZONE},
    } | ({} if api is None else {"api": api})
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


async def cgw(
    capsys: pytest.CaptureFixture[str], argv: list[str], cfg: Path
) -> tuple[int, str, str]:
    """``cgw ARGV -c CFG`` in a thread (it blocks on the API this loop serves)."""
    code = await asyncio.to_thread(main, [*argv[1:], "-c", str(cfg)])
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_documented_commands_read_the_same_through_the_api_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = Site(tmp_path / "b.db")
    await november(site)
    await site.stop(clean=True)
    clock = site.clock  # the API's "now": Dec 1, 00:00

    def service(store: Store) -> ReportService:
        return ReportService(store, Recorder(clock, ZONE), lambda: ZONE, clock)

    commands = documented()
    assert [c[:3] for c in commands] == [["cgw", "report", "availability"]] * 3 + [
        ["cgw", "alarms", "report"]
    ]
    through_api = []
    async with running(tmp_path, clock, reports=service) as h:
        cfg = config(tmp_path, json.loads(h.config.read_text())["api"])
        status, doc, _ = await h.call(
            "GET", "/v1/reports/availability?from=2026-11-01&to=2026-11-30"
        )
        assert status == 200
        (period,) = doc["periods"]
        assert (period["period"], period["all"]["uptime_pct"]) == ("2026-11-01/2026-11-30", 99.387)
        for command in commands:
            code, out, err = await cgw(capsys, command, cfg)
            assert (code, err) == (0, "read from the running gateway\n" * (command[1] == "report"))
            through_api.append(out)
        assert json.loads(through_api[2]) == doc
        bad = {
            "": '"from" must be a date, YYYY-MM-DD',
            "?from=2026-11-01&to=2026-13-01": '"to" must be a date, YYYY-MM-DD',
            "?from=2026-11-30&to=2026-11-01": "the range ends (2026-11-01) before it starts"
            " (2026-11-30)",
            "?from=2025-11-01&to=2026-12-06": "a report spans at most 400 days",
            "?from=2026-11-01&to=2026-11-30&by=week": '"by" must be one of day, month'
            " (or left out)",
        }
        for query, error in bad.items():
            got = await h.call("GET", f"/v1/reports/availability{query}")
            assert got[:2] == (400, {"error": error}), query
        got = await h.call("GET", "/v1/reports/availability?from=2026-11-01&to=2026-11-30", None)
        assert got[0] == 401

    assert through_api[0] == block("reports.md", "text")  # the page's example
    assert through_api[1].splitlines()[0].startswith("period,group,name,kind,supplier,devices,")
    assert len(through_api[1].splitlines()) == 1 + 30 * (3 + 3 + 3 + 1)
    assert "not acknowledged within the target" not in through_api[3]  # no alarms that month
    # stopped: the same commands read the store file, read-only, and say so
    before = (tmp_path / "b.db").stat().st_mtime_ns
    for command, out in zip(commands[:3], through_api[:3], strict=True):
        code, standalone, err = await cgw(capsys, command, cfg)
        assert (code, err) == (0, f"the gateway is not running: read from {tmp_path / 'b.db'}\n")
        assert standalone == out, command
    assert (tmp_path / "b.db").stat().st_mtime_ns == before
    code, _, err = await cgw(capsys, commands[3], cfg)
    assert code == 1  # the response report needs the running gateway
    assert "(is the gateway running?)" in err


async def test_a_store_without_history_or_none_at_all_is_said_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, None)  # no API: the file is read
    argv = ["cgw", "report", "availability", "--from", "2026-11-01", "--to", "2026-11-30"]
    code, _, err = await cgw(capsys, argv, cfg)
    assert (code, err.splitlines()[-1]) == (1, f"no store file at {tmp_path / 'b.db'}")
    shutil.copy(FIXTURES / "store_v0.db", tmp_path / "b.db")  # a file of an older release
    open_db(
        tmp_path / "b.db", Schema("store", STORE.migrations[:3]), needs_check=unclean
    ).conn.close()
    code, _, err = await cgw(capsys, argv, cfg)
    assert (code, err.splitlines()[-1]) == (
        1,
        f"cannot report from the store file {tmp_path / 'b.db'}: it has no availability history"
        " yet (schema version 3): the gateway records it from schema version 4 on, once it has"
        " started",
    )
    store = await Store.open(tmp_path / "b.db", quota=1 << 20, reserve=1 << 16, sinks=["mqtt"])
    await store.close()
    code, out, err = await cgw(capsys, argv, cfg)
    assert code == 0  # a store of this release that never ran a recorder: nothing counted
    assert out.splitlines()[-1].split() == ["all", "0", "-", "-", "-", "-", "-", "-"]
    code, _, err = await cgw(capsys, [*argv[:6], "2026-10-31"], cfg)
    assert (code, err) == (
        2,
        "cgw report: the range ends (2026-10-31) before it starts (2026-11-01)\n",
    )
