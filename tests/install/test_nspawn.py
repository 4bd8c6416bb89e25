"""install.sh, the hardened unit and uninstall.sh on a booted Debian bookworm, systemd as PID 1.

tests/integration/test_install.py covers the scripts against a staging root and the unit with
``systemd-analyze``; what only a running systemd shows is here: ``LoadCredential=``, ``Type=notify``
with its STATUS line, the watchdog, the sandbox settings, mosquitto's logins and ACL as the
packaged broker loads them. The container (tests/support/nspawn.py) is booted once for the
module, and the tests follow an installer's steps in order:

1. ``install.sh`` on a fresh system: exit 3, the missing secrets listed, nothing started;
2. the secrets, the platform's certificates and the broker address filled in as docs/install.md
   says, ``install.sh`` again: the unit is active, READY with its STATUS line;
3. the credentials, ``cgw status``, ``cgw alarms list``, a button press reaching the platform's
   broker (a second mosquitto inside, with TLS and client certificates), the watchdog;
4. ``uninstall.sh``, then ``uninstall.sh --purge``.

Needs root, debootstrap and systemd-nspawn (``make install-test`` installs both); skips when
the Debian mirror or PyPI cannot be reached and nothing is cached yet. Only ``make
install-test`` runs it (marker ``install``).
"""

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.commands.signing import keygen
from tests.support.mosquitto import TlsFiles, make_tls_files
from tests.support.nspawn import Container, Unavailable, cached_root, wheelhouse

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]  # a first run builds the root

REPO = Path(__file__).resolve().parents[2]
SRC = "/media/cgw"  # the checkout inside, read-only, as copied to a Pi
INSTALL = f"{SRC}/systemd/install.sh"
CREDS = "/etc/cgw/credentials"
TOPICS = "cgw/huayuan-b7/gw-01"  # topic_root/site_id/gateway_id of gateway.pi.yaml
PLATFORM = "/srv/platform"  # the platform broker's files inside
PLATFORM_PORT = "8883"  # gateway.pi.yaml's upstream port
SECRETS = {"mqtt-client-key", "mqtt-password", "api-token", "privacy-key", "command-pubkey",
           "notify-guard-room"}  # fmt: skip  # what the Pi config names besides the generated one
WATCHDOG_SEC = 3  # a test drop-in; the unit's 30 s would make the test wait that long
DEADLINE = 60.0
T = TypeVar("T")


def poll(what: str, probe: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """``probe()`` again every 0.2 s until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while (got := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return got


def show(box: Container, *props: str) -> dict[str, str]:
    """``systemctl show cgw`` for ``props``."""
    out = box.run("systemctl", "show", "cgw", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(box: Container) -> str:
    """The unit's journal, messages only."""
    return box.run("journalctl", "--unit=cgw", "--output=cat", "--no-pager").stdout


def running(box: Container) -> dict[str, str] | None:
    """The unit's state once it is active (running, READY sent), else None."""
    state = show(box, "ActiveState", "SubState", "MainPID", "NRestarts", "StatusText")
    return state if (state["ActiveState"], state["SubState"]) == ("active", "running") else None


@pytest.fixture(scope="module")
def box() -> Iterator[Container]:
    if os.geteuid() != 0:
        pytest.skip("needs root: it mounts an overlay and boots a container")
    if shutil.which("systemd-nspawn") is None or shutil.which("debootstrap") is None:
        pytest.skip("systemd-nspawn and debootstrap are not installed (make install-test does)")
    try:
        root = cached_root()
        wheels = wheelhouse(root, REPO)
    except Unavailable as exc:
        pytest.skip(str(exc))
    container = Container(root, [(REPO, SRC), (wheels, "/media/wheels")])
    try:
        container.start()
        yield container
    finally:
        container.stop()


def install(box: Container) -> tuple[int, str]:
    """``sudo ./systemd/install.sh`` from the checkout; pip takes the cached wheels."""
    result = box.run(
        "env", "PIP_NO_INDEX=1", "PIP_FIND_LINKS=/media/wheels", INSTALL, check=False, timeout=300
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def first_install(box: Container) -> tuple[int, str]:
    return install(box)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("platform-tls"))


def on_platform(client: str, *args: str) -> list[str]:
    """mosquitto_pub or mosquitto_sub on the platform broker, with the gateway's certificate."""
    return [client, "-h", "127.0.0.1", "-p", PLATFORM_PORT, "--cafile", f"{PLATFORM}/ca.crt",
            "--cert", "/etc/cgw/tls/gw-01.crt", "--key", f"{CREDS}/mqtt-client-key",
            *args]  # fmt: skip


def start_platform_broker(box: Container, tls: TlsFiles) -> None:
    """The platform's broker, inside: mutual TLS on 127.0.0.1:8883, as a transient unit."""
    box.sh(f"install -d {PLATFORM}")
    for name, path in (("ca.crt", tls.ca_cert), ("server.crt", tls.server_cert),
                       ("server.key", tls.server_key)):  # fmt: skip
        box.sh(f"cat > {PLATFORM}/{name}; chmod 0644 {PLATFORM}/{name}", input=path.read_text())
    conf = (f"listener {PLATFORM_PORT} 127.0.0.1\ncafile {PLATFORM}/ca.crt\n"
            f"certfile {PLATFORM}/server.crt\nkeyfile {PLATFORM}/server.key\n"
            "require_certificate true\nallow_anonymous true\n")  # fmt: skip
    box.sh(f"cat > {PLATFORM}/mosquitto.conf", input=conf)
    box.run("systemd-run", "--unit=platform-broker", "/usr/sbin/mosquitto", "-c",
            f"{PLATFORM}/mosquitto.conf")  # fmt: skip


@pytest.fixture(scope="module")
def second_install(
    box: Container,
    first_install: tuple[int, str],
    tls: TlsFiles,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[int, str]:
    """Steps 3 and 4 of docs/install.md, then install.sh again."""
    keys = keygen(tmp_path_factory.mktemp("platform-keys"))
    start_platform_broker(box, tls)
    # the platform's public files into /etc/cgw/tls, the secrets without a command line
    box.sh("cat > /etc/cgw/tls/platform-ca.crt", input=tls.ca_cert.read_text())
    box.sh("cat > /etc/cgw/tls/gw-01.crt", input=tls.client_cert.read_text())
    for name, text in {
        "mqtt-client-key": tls.client_key.read_text(),
        "mqtt-password": secrets.token_hex(16),
        "api-token": secrets.token_hex(32),
        "privacy-key": secrets.token_hex(32),
        "command-pubkey": keys.public.read_text(),
        "notify-guard-room": "json://127.0.0.1:9/\n",
    }.items():
        box.sh(f"umask 077; cat > {CREDS}/{name}", input=text)
    # the platform's broker address in gateway.yaml (the rest of the Pi example stays)
    box.sh(
        "sed -i 's/^    host: mqtt.platform.example$/    host: 127.0.0.1/' /etc/cgw/gateway.yaml"
    )
    return install(box)


@pytest.fixture(scope="module")
def active(box: Container, second_install: tuple[int, str]) -> dict[str, str]:
    code, out = second_install
    assert code == 0, out
    return poll("cgw.service to run", lambda: running(box))


# -- 1. without secrets -------------------------------------------------------------------------


def test_a_first_install_lists_the_missing_secrets_and_starts_nothing(
    box: Container, first_install: tuple[int, str]
) -> None:
    code, out = first_install
    assert code == 3, out
    missing = set(re.findall(rf"missing secret: {CREDS}/(\S+) \(seen as ", out))
    assert missing == SECRETS, out
    assert "cgw.service was neither enabled nor started" in out
    assert box.run("systemctl", "is-enabled", "cgw", check=False).stdout.strip() == "disabled"
    assert show(box, "ActiveState")["ActiveState"] == "inactive"
    assert box.sh(f"stat -c '%U %a' {CREDS} {CREDS}/local-mqtt-password").split("\n")[:2] == [
        "root 700",
        "root 600",
    ]


# -- 2. with secrets ----------------------------------------------------------------------------


def test_with_the_secrets_the_unit_is_ready_with_its_status_line(
    box: Container, second_install: tuple[int, str], active: dict[str, str]
) -> None:
    out = second_install[1]
    assert "+ started cgw" in out, out
    assert box.run("systemctl", "is-enabled", "cgw").stdout.strip() == "enabled"
    # Type=notify: "active" only after READY=1; the STATUS line is the gateway's summary
    assert re.fullmatch(
        r"\d+/\d+ devices online, uplink (up|down), backlog \d+, \d+ open alarms?",
        active["StatusText"],
    ), active
    user = box.sh(f"ps -o user= -p {active['MainPID']}").strip()
    assert user == "cgw"


# -- 3. in service ------------------------------------------------------------------------------


def test_the_credentials_are_readable_by_the_service_alone(
    box: Container, active: dict[str, str]
) -> None:
    run_dir = "/run/credentials/cgw.service"
    names = box.sh(f"ls {run_dir}").split()
    assert set(names) == {f"cgw_{n}" for n in SECRETS | {"local-mqtt-password"}}
    modes = box.sh(f"stat -c '%n %U %a' {run_dir} {run_dir}/*").splitlines()
    assert modes[0] == f"{run_dir} cgw 500", modes
    assert all(line.endswith(" cgw 400") for line in modes[1:]), modes
    as_cgw = "setpriv --reuid=cgw --regid=cgw --init-groups"
    assert box.sh(f"{as_cgw} cat {run_dir}/cgw_api-token") == box.sh(f"cat {CREDS}/api-token")
    # the source directory is root's alone; another user reads neither copy
    assert box.run(*as_cgw.split(), "cat", f"{CREDS}/api-token", check=False).returncode != 0
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"]
    assert box.run(*nobody, f"{run_dir}/cgw_api-token", check=False).returncode != 0


def test_cgw_status_as_an_installer_types_it(box: Container, active: dict[str, str]) -> None:
    def uplink_up() -> str | None:
        result = box.run("cgw", "status", check=False)
        return result.stdout if "uplink: up" in result.stdout else None

    out = poll("cgw status to show the uplink up", uplink_up)
    assert out.startswith("gateway huayuan-b7/gw-01 "), out
    assert re.search(r"^  ok   sink:mqtt +connected$", out, re.MULTILINE), out
    assert re.search(r"^  ok   local_broker:buttons +subscribed$", out, re.MULTILINE), out
    # the STATUS line follows within seconds (READY=1 went out before the uplink was up)
    poll(
        "the STATUS line to show the uplink up",
        lambda: ", uplink up," in show(box, "StatusText")["StatusText"] or None,
        timeout=5,
    )


def test_a_second_run_changes_nothing_and_a_reload_keeps_the_process(
    box: Container, active: dict[str, str]
) -> None:
    code, out = install(box)
    assert code == 0, out
    assert out.endswith("Nothing changed: the installation is up to date.\n"), out
    check = box.run("/opt/cgw/systemd/install.sh", "--check")  # step 4 of docs/install.md
    assert "/etc/cgw/gateway.yaml: OK" in check.stdout
    box.run("systemctl", "reload", "cgw")
    poll("the reload in the journal", lambda: "reloaded: nothing changed" in journal(box) or None)
    assert show(box, "MainPID", "NRestarts") == {"MainPID": active["MainPID"], "NRestarts": "0"}


def test_a_button_press_raises_an_alarm_that_reaches_the_platform(
    box: Container, active: dict[str, str]
) -> None:
    # a retained line first: once the subscriber prints it, it is subscribed
    box.run(*on_platform("mosquitto_pub", "-r", "-t", "test/ready", "-m", "subscribed"))
    subscriber = on_platform("mosquitto_sub", "-v", "-t", "test/ready", "-t", f"{TOPICS}/alarm/+")
    with box.spawn(*subscriber) as lines:
        assert next(lines) == "test/ready subscribed"
        # the button's own login, from the file install.sh generated for its config entry
        box.sh(
            "mosquitto_pub -h 127.0.0.1 -p 1883 -u sos-flats"
            ' -P "$(cat /etc/cgw/local-broker/sos-flats.password)" -q 1 -t sos/flat-101/event'
            """ -m '{"id": "press-1", "evt": "sos", "state": "pressed"}'"""
        )
        for line in lines:
            topic, _, payload = line.partition(" ")
            alarm = json.loads(payload)
            if alarm.get("device") == "flat-101":
                break
        assert topic == f"{TOPICS}/alarm/{alarm['alarm_id']}"
        assert (alarm["state"], alarm["severity"], alarm["kind"]) == (
            "raised",
            "critical",
            "contact",
        )
    listed = box.run("cgw", "alarms", "list").stdout
    row = next(line for line in listed.splitlines() if line.startswith(alarm["alarm_id"]))
    assert row.split()[1:5] == ["raised", "critical", "flat-101", "sos"], listed


def test_a_stopped_daemon_is_killed_by_the_watchdog_and_restarted(
    box: Container, active: dict[str, str]
) -> None:
    dropin = "/run/systemd/system/cgw.service.d/test-watchdog.conf"
    box.sh(
        f"install -d {Path(dropin).parent}; cat > {dropin}",
        f"[Service]\nWatchdogSec={WATCHDOG_SEC}\n",
    )
    try:
        box.sh("systemctl daemon-reload; systemctl restart cgw")
        before = poll("cgw.service to run", lambda: running(box))
        assert show(box, "WatchdogUSec")["WatchdogUSec"] == f"{WATCHDOG_SEC}s"
        box.run("kill", "-STOP", before["MainPID"])
        after = poll(
            "a restart after the watchdog timeout",
            lambda: ((s := running(box)) and s["MainPID"] != before["MainPID"] and s) or None,
        )
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
        assert f"cgw.service: Watchdog timeout (limit {WATCHDOG_SEC}s)!" in journal(box)
    finally:
        box.sh(f"rm -f {dropin}; systemctl daemon-reload")


# -- 4. uninstall --------------------------------------------------------------------------------


def test_uninstall_removes_the_service_and_keeps_config_and_store(
    box: Container, active: dict[str, str]
) -> None:
    out = box.run(f"{SRC}/systemd/uninstall.sh").stdout
    assert "- stopped cgw" in out
    assert show(box, "LoadState", "ActiveState") == {
        "LoadState": "not-found",
        "ActiveState": "inactive",
    }
    assert box.sh("ls -d /opt/cgw /usr/local/bin/cgw 2>&1 || true").count("No such file") == 2
    assert box.sh("ls /etc/cgw/gateway.yaml /var/lib/cgw/buffer.db").split() == [
        "/etc/cgw/gateway.yaml",
        "/var/lib/cgw/buffer.db",
    ]
    # --purge: config, secrets, store, the user and the broker's cgw files go; the broker stays
    out = box.run(f"{SRC}/systemd/uninstall.sh", "--purge").stdout
    assert "- removed user cgw" in out, out
    gone = "/etc/cgw /var/lib/cgw /etc/mosquitto/conf.d/cgw-local.conf /etc/mosquitto/cgw.passwd"
    assert box.sh(f"ls -d {gone} 2>&1 || true").count("No such file") == len(gone.split())
    assert box.run("id", "cgw", check=False).returncode != 0
    assert box.run("systemctl", "is-active", "mosquitto", check=False).stdout.strip() == "active"
    assert "Nothing changed" in box.run(f"{SRC}/systemd/uninstall.sh", "--purge").stdout
