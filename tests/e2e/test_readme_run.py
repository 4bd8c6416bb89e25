"""The README's commands (and the docs' cgw blocks of ``DOC_BLOCKS``), run as written against a
scratch install: the demo's gateway.

The demo is a whole gateway (a broker, simulated Modbus sensors on bus ``rs485-1``, the local
API, the monitor, the console) with a config file of its own. Every line of the README's
command block runs here through bash, as typed, with ``CGW_CONFIG`` naming the demo's config
(so ``cgw status`` finds it as it finds ``/etc/cgw/gateway.yaml`` on a box) and that file in
place of ``/etc/cgw/gateway.yaml`` where a line names it. Only the lines listed in ``NOT_RUN``
are not run here, each for the reason given there; every other line must exit 0.
"""

import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import REPO

pytestmark = pytest.mark.slow
NOT_RUN = {
    "cgw run": "the demo runs the daemon on this config; a second one would find its ports taken"
    " (tests/e2e/test_daemon.py runs cgw run)",
    "cgw users add": "asks for the password twice on the terminal; tests/integration/"
    "test_cli_users.py types it",
    "cgw demo": "this test runs the demo (tests/e2e/test_daemon.py runs cgw demo --duration)",
}


DOC_BLOCKS = ("commissioning.md", "devices.md", "reports.md", "mqtt-api.md")


def doc_lines() -> list[str]:
    """The cgw lines of the first shell block of each page of ``DOC_BLOCKS``."""
    out = []
    for page in DOC_BLOCKS:
        text = (REPO / "docs" / page).read_text()
        found = re.search(r"```sh\n(.*?)```", text, re.S)
        assert found is not None, page
        body = [ln.split("  #")[0].strip() for ln in found.group(1).splitlines() if ln.strip()]
        assert all(ln.startswith("cgw ") for ln in body), (page, body)
        out += body
    return out


def readme_lines() -> list[str]:
    """The README's command block, one command per line, comments dropped."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"```sh\n(\.venv/bin/cgw check-config.*?)```", text, re.S)
    assert found is not None
    return [line.split("  #")[0].strip() for line in found.group(1).splitlines() if line.strip()]


def test_every_readme_command_runs_against_the_demo(tmp_path: Path) -> None:
    lines = readme_lines() + doc_lines()
    assert len(lines) >= 20
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--duration", "90"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as demo:
        assert demo.stdout is not None
        try:
            shown: list[str] = []
            for line in demo.stdout:  # up to the scripted acknowledgement: all is running
                shown.append(line)
                if "-> ACKNOWLEDGED after" in line:
                    break
            config = next(ln.split()[-1] for ln in shown if ln.strip().startswith("cgw status -c"))
            results = run_all(lines, Path(config), tmp_path)
            console = next(ln for ln in shown if ln.startswith("Field console: "))
            found = re.fullmatch(
                r"Field console: (\S+) \(sign in as demo / (\S+), an administrator;\n", console
            )
            assert found is not None, console
            signed_in = console_sign_in(found.group(1), "demo", found.group(2))
        finally:
            demo.terminate()
            rest, _ = demo.communicate(timeout=30)
    text = "".join(shown) + rest
    assert "started a loopback mosquitto on 127.0.0.1:" in text  # a free port: never the box's
    assert "cgw alarms ack <alarm id> --by <your name> -c " in text
    assert ">>> the guard acknowledges it: cgw alarms ack " in text
    assert "acknowledged by guard-wang" in text  # the CLI's own answer, through the local API
    assert signed_in["role"] == "admin"  # the printed demo login opens the console
    assert signed_in["site"] == "demo-site"
    skipped = [line for line, result in results.items() if result is None]
    assert sorted(skipped) == sorted(
        line for line in lines if any(verb in line for verb in NOT_RUN)
    )
    failed = {line: r for line, r in results.items() if r is not None and r.returncode != 0}
    assert not failed, {k: (v.stdout[-500:], v.stderr[-500:]) for k, v in failed.items()}
    outputs = {line: r.stdout for line, r in results.items() if r is not None}
    assert "devices: 4/4 online" in next(v for k, v in outputs.items() if "cgw status" in k)
    assert "bus rs485-1: 8 of 8 unit ids answer" in next(
        v for k, v in outputs.items() if "scan" in k
    )
    assert "acknowledged" in next(v for k, v in outputs.items() if "alarms ack" in k)
    assert (cwd_file := tmp_path / "alarm.json").is_file()  # cgw schema alarm > alarm.json
    assert '"title"' in cwd_file.read_text()


def console_sign_in(url: str, name: str, password: str) -> dict[str, Any]:
    """Sign in to the console at ``url`` as a browser would; what ``/api/me`` says."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(url + "/login", timeout=10).read().decode()
    token = re.search(r'name="token" value="([^"]+)"', page)
    assert token is not None
    form = urllib.parse.urlencode({"name": name, "password": password, "token": token.group(1)})
    opener.open(url + "/login", form.encode(), timeout=10).read()
    me: dict[str, Any] = json.loads(opener.open(url + "/api/me", timeout=10).read())
    return me


def run_all(
    lines: list[str], config: Path, cwd: Path
) -> dict[str, subprocess.CompletedProcess[str] | None]:
    """Each line's outcome, in order (None: not run, see ``NOT_RUN``)."""
    env = {**os.environ, "CGW_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    cgw = f"{sys.executable} -m gateway"
    out: dict[str, subprocess.CompletedProcess[str] | None] = {}
    alarm = ""
    for line in lines:
        if any(verb in line for verb in NOT_RUN):
            out[line] = None
            continue
        command = re.sub(r"^(\.venv/bin/)?cgw ", cgw + " ", line)
        command = command.replace("/etc/cgw/gateway.yaml", str(config))
        command = command.replace("<id>", alarm)
        result = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=cwd,
            env=env, check=False,
        )  # fmt: skip
        out[line] = result
        if "alarms list" in line:  # the demo's alarm, for the ack line that follows
            ids = re.findall(r"\b([0-9a-f]{16})\b.*lobby-sos", result.stdout)
            alarm = ids[0] if ids else "none"
    return out
