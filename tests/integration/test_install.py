"""The production install: the unit, install.sh / uninstall.sh, the Pi config, the broker config.

Nothing here touches the real system. The unit is checked with ``systemd-analyze`` on a copy;
the scripts run with ``--root <tmp>`` (files only: no apt-get, useradd or systemctl) and
``--no-venv`` (a venv and pip install would take a minute and need the network); the Pi config
is validated with its credential paths pointed at temporary files; the local broker config is
loaded by a real mosquitto on a free loopback port, stopped by PID afterwards.
"""

import asyncio
import contextlib
import hashlib
import itertools
import os
import pwd
import re
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.cli import main as cli
from gateway.commands.signing import keygen
from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "cgw.service"
INSTALL = REPO / "systemd" / "install.sh"
UNINSTALL = REPO / "systemd" / "uninstall.sh"
PI_CONFIG = REPO / "config" / "examples" / "gateway.pi.yaml"
LOCAL_CONF = REPO / "config" / "mosquitto" / "local.conf"
CREDENTIALS = "/run/credentials/cgw.service/cgw_"  # what LoadCredential=cgw:<dir> yields
MAX_EXPOSURE = 2.0
MOSQUITTO = "/usr/sbin/mosquitto"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart binary swapped for one that exists (verify checks it)."""
    text = UNIT.read_text()
    assert "/opt/cgw/.venv/bin/cgw" in text
    copy = tmp_path / "cgw.service"
    copy.write_text(text.replace("/opt/cgw/.venv/bin/cgw", shutil.which("true") or "/bin/true"))
    return copy


# -- the unit ---------------------------------------------------------------------------------


@needs_analyze
def test_unit_verifies(unit_copy: Path) -> None:
    result = run("systemd-analyze", "verify", unit_copy, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cgw.service" not in result.stderr, result.stderr


@needs_analyze
def test_unit_exposure_is_at_most_2(unit_copy: Path) -> None:
    result = run("systemd-analyze", "security", "--offline=true", unit_copy)
    found = re.search(r"Overall exposure level for cgw\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout
    assert float(found[1]) <= MAX_EXPOSURE, result.stdout
    assert found[2] == "OK"


def test_unit_keeps_the_settings_the_gateway_relies_on() -> None:
    lines = set(UNIT.read_text().splitlines())
    for setting in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "User=cgw",
        "SupplementaryGroups=dialout gpio",
        "StateDirectory=cgw",
        "LoadCredential=cgw:/etc/cgw/credentials",
        "CapabilityBoundingSet=",
        "DevicePolicy=closed",
        "ExecStart=/opt/cgw/.venv/bin/cgw run -c /etc/cgw/gateway.yaml",
    ):
        assert setting in lines, setting
    assert not any(line.startswith("DynamicUser=") for line in lines)


# -- the Pi config ----------------------------------------------------------------------------


def credential_names(text: str) -> set[str]:
    """Credential file names the config refers to, comments left out."""
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return set(re.findall(re.escape(CREDENTIALS) + r"([A-Za-z0-9._-]+)", body))


def test_pi_config_passes_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = PI_CONFIG.read_text()
    names = credential_names(text)
    assert {"mqtt-password", "local-mqtt-password", "api-token"} <= names
    assert {"privacy-key", "command-pubkey"} <= names
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    for name in names:
        secret = creds / name
        secret.write_text("0123456789abcdef" * 4 + "\n")  # long enough for the API token
        secret.chmod(0o600)
    (creds / "privacy-key").write_text(secrets.token_hex(32) + "\n")  # a random key
    keygen(tmp_path / "keys")  # the platform's public key, as the installer copies it
    shutil.copy(tmp_path / "keys" / "platform.pub", creds / "command-pubkey")
    (tmp_path / "tls").mkdir()
    for public in ("platform-ca.crt", "gw-01.crt"):
        (tmp_path / "tls" / public).write_text("-----BEGIN CERTIFICATE-----\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(text.replace(CREDENTIALS, f"{creds}/"))

    assert cli.main(["check-config", str(config)]) == 0, capsys.readouterr().err
    assert f"{config}: OK" in capsys.readouterr().out


def test_pi_config_secrets_are_documented() -> None:
    guide = (REPO / "docs" / "install.md").read_text()
    for name in credential_names(PI_CONFIG.read_text()):
        documented = f"`{name}`" in guide or (
            name.startswith("notify-") and "`notify-<channel>`" in guide
        )
        assert documented, f"credential {name} is not in docs/install.md"


def test_pi_config_refuses_a_group_readable_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = PI_CONFIG.read_text()
    creds = tmp_path / "credentials"
    creds.mkdir()
    for name in credential_names(text):
        (creds / name).write_text("0123456789abcdef" * 4 + "\n")
        (creds / name).chmod(0o600)
    (creds / "api-token").chmod(0o640)
    (tmp_path / "tls").mkdir()
    for public in ("platform-ca.crt", "gw-01.crt"):
        (tmp_path / "tls" / public).touch()
    config = tmp_path / "gateway.yaml"
    config.write_text(text.replace(CREDENTIALS, f"{creds}/"))

    assert cli.main(["check-config", str(config)]) == 2
    assert "api.token_file" in capsys.readouterr().err


# -- install.sh / uninstall.sh ----------------------------------------------------------------


def install(root: Path, *extra: str) -> str:
    return run("bash", INSTALL, "--root", root, "--no-venv", *extra).stdout


def uninstall(root: Path, *extra: str) -> str:
    return run("bash", UNINSTALL, "--root", root, *extra).stdout


def link_cgw(root: Path) -> None:
    """This venv's cgw where install.sh looks for the installed one."""
    venv_bin = root / "opt" / "cgw" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "cgw").symlink_to(Path(sys.executable).with_name("cgw"))


def test_scripts_parse() -> None:
    for script in (INSTALL, UNINSTALL):
        run("bash", "-n", script)
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_check_only_exits_3_for_a_config_that_is_not_valid_yet(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root)
    link_cgw(root)
    result = run("bash", INSTALL, "--root", root, "--check", check=False)
    assert result.returncode == 3, result.stdout + result.stderr  # the example's secrets are absent
    assert "does not point to a file" in result.stdout
    assert "/etc/cgw/gateway.yaml" in result.stdout


def test_install_into_a_root_then_again_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install(root)
    assert "Done:" in first, first

    etc = root / "etc" / "cgw"
    assert mode(etc) == 0o750
    assert mode(etc / "credentials") == 0o700
    assert mode(etc / "credentials" / "local-mqtt-password") == 0o600
    assert len((etc / "credentials" / "local-mqtt-password").read_text()) >= 32
    assert mode(etc / "gateway.yaml") == 0o640
    assert (etc / "gateway.yaml").read_text() == PI_CONFIG.read_text()
    assert mode(root / "var" / "lib" / "cgw") == 0o700
    assert (root / "etc" / "systemd" / "system" / "cgw.service").read_text() == UNIT.read_text()
    local = root / "etc" / "mosquitto" / "conf.d" / "cgw-local.conf"
    assert local.read_text() == LOCAL_CONF.read_text()
    opt = root / "opt" / "cgw"
    assert (opt / "gateway" / "cli" / "main.py").read_bytes() == (
        REPO / "gateway" / "cli" / "main.py"
    ).read_bytes()
    assert (opt / "gateway" / "profiles" / "pm-laser-rs485.yaml").is_file()
    assert os.access(opt / "systemd" / "install.sh", os.X_OK)
    assert not (opt / "tests").exists()
    assert not list(opt.rglob("__pycache__"))
    assert os.readlink(root / "usr" / "local" / "bin" / "cgw") == "/opt/cgw/.venv/bin/cgw"
    if shutil.which("mosquitto_passwd"):
        passwd = root / "etc" / "mosquitto" / "cgw.passwd"
        assert passwd.read_text().startswith("cgw:$")  # hashed, never the plain password
        assert mode(passwd) == 0o600
    acl = root / "etc" / "mosquitto" / "cgw.acl"  # no cgw to derive it yet: devices get nothing
    assert [line for line in acl.read_text().splitlines() if line[:1] not in ("#", "")] == [
        "user cgw"
    ]
    assert mode(acl) == 0o600

    second = install(root)
    assert "Nothing changed" in second, second
    assert "+ " not in second, second


def test_install_keeps_an_existing_config_and_fixes_secret_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    creds = root / "etc" / "cgw" / "credentials"
    creds.mkdir(parents=True)
    config = root / "etc" / "cgw" / "gateway.yaml"
    config.write_text("gateway: {site_id: mine, gateway_id: gw-9}\n")
    (creds / "mqtt-password").write_text("s3cret\n")
    (creds / "mqtt-password").chmod(0o644)
    (creds / "local-mqtt-password").write_text("chosen-by-the-installer\n")
    (creds / "local-mqtt-password").chmod(0o600)

    out = install(root)

    assert config.read_text() == "gateway: {site_id: mine, gateway_id: gw-9}\n"
    assert "gateway.yaml exists: kept" in out
    assert mode(creds / "mqtt-password") == 0o600
    assert "mode of /etc/cgw/credentials/mqtt-password set to 0600" in out
    assert (creds / "local-mqtt-password").read_text() == "chosen-by-the-installer\n"
    assert "Nothing changed" in install(root)


def test_install_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = install(root, "--dry-run")
    assert "would:" in out, out
    assert "Dry run:" in out, out
    assert not root.exists() or not any(root.iterdir())


def test_lan_listener_is_tls_only_and_written_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--lan-listener", "192.168.10.2")
    lan = root / "etc" / "mosquitto" / "conf.d" / "cgw-lan.conf"
    lines = lan.read_text().splitlines()
    assert "listener 8883 192.168.10.2" in lines
    assert "certfile /etc/mosquitto/certs/cgw-lan.crt" in lines
    assert not any(line.startswith("listener 1883") for line in lines)
    ca = root / "etc" / "cgw" / "site-ca"
    assert mode(ca) == 0o700
    assert mode(ca / "ca.key") == 0o600
    assert mode(root / "etc" / "mosquitto" / "certs" / "cgw-lan.key") == 0o600
    public = root / "etc" / "cgw" / "tls" / "site-ca.crt"
    assert public.read_bytes() == (ca / "ca.crt").read_bytes()
    cert = root / "etc" / "mosquitto" / "certs" / "cgw-lan.crt"
    run("openssl", "verify", "-CAfile", public, cert)
    assert "does match" in run("openssl", "x509", "-in", cert, "-noout", "-checkip",
                               "192.168.10.2").stdout  # fmt: skip
    assert "Nothing changed" in install(root, "--lan-listener", "192.168.10.2")

    out = install(root, "--lan-listener", "192.168.10.3")  # a new address: a new certificate
    assert "issued the LAN listener's certificate for 192.168.10.3" in out
    assert "created the site CA" not in out


def test_a_new_site_ca_issues_the_lan_certificate_again(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, "--lan-listener", "192.168.10.2")
    shutil.rmtree(root / "etc" / "cgw" / "site-ca")  # how docs/install.md replaces the CA

    out = install(root, "--lan-listener", "192.168.10.2")
    assert "created the site CA" in out
    assert "issued the LAN listener's certificate for 192.168.10.2" in out
    cert = root / "etc" / "mosquitto" / "certs" / "cgw-lan.crt"
    run("openssl", "verify", "-CAfile", root / "etc" / "cgw" / "tls" / "site-ca.crt", cert)


def printed_fingerprint(out: str) -> str:
    """The console certificate's fingerprint in install.sh's one line for it."""
    found = re.search(
        r"^  SHA-256 fingerprint of the console's certificate: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$",
        out,
        re.MULTILINE,
    )
    assert found, out
    return found[1]


def fingerprint(cert: Path) -> str:
    shown = run("openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256").stdout
    return shown.strip().split("=", 1)[1]


def printed_console_section(out: str) -> dict[str, Any]:
    """The console lines install.sh printed for gateway.yaml, read as YAML."""
    block = out[out.index("\n    console:\n") + 1 :].splitlines()
    lines = itertools.takewhile(lambda line: line.startswith("    "), block)
    section = yaml.safe_load(textwrap.dedent("\n".join(lines)))
    assert isinstance(section, dict), out
    return dict(section["console"])


def test_console_certificate_comes_from_the_site_ca_and_its_fingerprint_is_printed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    etc = root / "etc" / "cgw"
    first = install(root, "--console", "192.168.10.2")
    cert, key = etc / "tls" / "console.crt", etc / "credentials" / "console.key"
    site_ca = etc / "tls" / "site-ca.crt"
    assert "issued the console's certificate for 192.168.10.2" in first
    assert mode(cert) == 0o644
    assert mode(key) == 0o600
    assert mode(etc / "site-ca" / "ca.key") == 0o600
    run("openssl", "verify", "-purpose", "sslserver", "-CAfile", site_ca, cert)  # serverAuth
    assert "does match" in run("openssl", "x509", "-in", cert, "-noout", "-checkip",
                               "192.168.10.2").stdout  # fmt: skip
    days_826 = str(826 * 86400)
    expiry = run("openssl", "x509", "-in", cert, "-noout", "-checkend", days_826, check=False)
    assert expiry.returncode == 1, "valid for more than 825 days: iPhones refuse it"
    assert printed_fingerprint(first) == fingerprint(cert)
    assert printed_console_section(first) == {
        "host": "192.168.10.2",
        "allow_remote": True,
        "tls_cert": "/etc/cgw/tls/console.crt",
        "tls_key": CREDENTIALS + "console.key",
        "public_url": "https://192.168.10.2:8088",
    }

    second = install(root, "--console", "192.168.10.2")
    assert "Nothing changed" in second, second
    assert printed_fingerprint(second) == printed_fingerprint(first)

    ca = site_ca.read_bytes()
    moved = install(root, "--console", "gw-b7.lan")  # a new address (a name): a new certificate
    assert "issued the console's certificate for gw-b7.lan" in moved
    assert "created the site CA" not in moved
    assert site_ca.read_bytes() == ca
    assert printed_fingerprint(moved) == fingerprint(cert) != printed_fingerprint(first)
    run("openssl", "verify", "-CAfile", site_ca, cert)
    assert "does match" in run("openssl", "x509", "-in", cert, "-noout", "-checkhost",
                               "gw-b7.lan").stdout  # fmt: skip
    assert printed_console_section(moved)["public_url"] == "https://gw-b7.lan:8088"


def test_console_and_lan_listener_share_one_site_ca(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = install(root, "--lan-listener", "192.168.10.2", "--console", "192.168.10.2")
    assert out.count("created the site CA") == 1, out
    site_ca = root / "etc" / "cgw" / "tls" / "site-ca.crt"
    for cert in (
        root / "etc" / "mosquitto" / "certs" / "cgw-lan.crt",
        root / "etc" / "cgw" / "tls" / "console.crt",
    ):
        run("openssl", "verify", "-CAfile", site_ca, cert)
    assert "Nothing changed" in install(root, "--console", "192.168.10.2")


def test_console_dry_run_writes_nothing_and_a_wildcard_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = install(root, "--console", "192.168.10.2", "--dry-run")
    assert "would: issued the console's certificate for 192.168.10.2" in out
    assert "fingerprint of the console's certificate: known once it is issued (dry run)" in out
    assert not root.exists() or not any(root.iterdir())
    refused = run("bash", INSTALL, "--root", root, "--console", "0.0.0.0", check=False)
    assert refused.returncode == 2
    assert "not every address" in refused.stderr


def test_the_printed_console_lines_pass_the_config_check(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = install(root, "--console", "192.168.10.2")
    link_cgw(root)
    config = {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": "/var/lib/cgw/buffer.db"},
        "upstream": {"mqtt": {"host": "127.0.0.1"}},
        "console": printed_console_section(out),
    }
    (root / "etc" / "cgw" / "gateway.yaml").write_text(yaml.safe_dump(config))
    # --check under --root: the key's credential path and /etc/cgw mapped to the staged files
    result = run("bash", INSTALL, "--root", root, "--check", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/etc/cgw/gateway.yaml: OK" in result.stdout

    (root / "etc" / "cgw" / "credentials" / "console.key").unlink()
    result = run("bash", INSTALL, "--root", root, "--check", check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "console.tls_key: Path does not point to a file" in result.stdout
    again = run("bash", INSTALL, "--root", root, "--no-venv", check=False).stdout
    assert "missing secret: /etc/cgw/credentials/console.key" in again
    assert "--console ADDR makes it" in again


async def test_the_console_serves_https_with_the_issued_certificate(tmp_path: Path) -> None:
    from gateway.config.console import ConsoleConfig
    from gateway.console.server import Console
    from gateway.core.devices import DeviceStates
    from tests.unit.test_console_live import ports

    root = tmp_path / "root"
    out = install(root, "--console", "127.0.0.1")
    etc = root / "etc" / "cgw"
    port = free_port()
    cfg = ConsoleConfig(host="127.0.0.1", port=port, allow_remote=True,
                        tls_cert=etc / "tls" / "console.crt",
                        tls_key=etc / "credentials" / "console.key",
                        users_file=tmp_path / "users.yaml")  # fmt: skip
    trust_the_site_ca = ssl.create_default_context(cafile=etc / "tls" / "site-ca.crt")
    async with Console(cfg, ports(DeviceStates())) as console, aiohttp.ClientSession() as http:
        left = console.snapshot().cert_days_left  # health warns 30 days before the end
        assert left is not None
        assert 824 < left <= 825, left  # what install.sh issues
        async with http.get(f"https://127.0.0.1:{port}/login", ssl=trust_the_site_ca) as resp:
            assert resp.status == 200
            assert "Secure" in resp.headers.get("Set-Cookie", "")
        served = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", port))
        with pytest.raises(aiohttp.ClientConnectorCertificateError):  # the system CAs: unknown
            await http.get(f"https://127.0.0.1:{port}/login")
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest().upper()
    assert printed_fingerprint(out).replace(":", "") == digest  # what a browser shows


def test_a_plain_lan_listener_of_an_earlier_install_moves_to_tls(tmp_path: Path) -> None:
    root = tmp_path / "root"
    conf_d = root / "etc" / "mosquitto" / "conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "cgw-lan.conf").write_text(
        "# written by install.sh --lan-listener: the building LAN\nlistener 1883 10.0.0.7\n"
    )
    out = install(root)
    assert "plain-text listener on 10.0.0.7: moved to TLS" in out
    assert "listener 8883 10.0.0.7" in (conf_d / "cgw-lan.conf").read_text().splitlines()
    assert "Nothing changed" in install(root)


def test_an_unedited_earlier_local_conf_is_replaced(tmp_path: Path) -> None:
    root = tmp_path / "root"
    conf_d = root / "etc" / "mosquitto" / "conf.d"
    conf_d.mkdir(parents=True)
    shown = run("git", "-C", REPO, "show", "b7d49c9:config/mosquitto/local.conf", check=False)
    if shown.returncode != 0:
        pytest.skip("the earlier local.conf needs the git history")
    old = shown.stdout
    (conf_d / "cgw-local.conf").write_text(old)
    assert "updated /etc/mosquitto/conf.d/cgw-local.conf" in install(root)
    assert (conf_d / "cgw-local.conf").read_text() == LOCAL_CONF.read_text()

    edited = root / "edited"
    (edited / "etc/mosquitto/conf.d").mkdir(parents=True)
    (edited / "etc/mosquitto/conf.d/cgw-local.conf").write_text(old + "# mine\n")
    out = install(edited)
    assert "kept as it is" in out
    assert "has no acl_file line" in out


def test_install_rejects_unknown_options(tmp_path: Path) -> None:
    result = run("bash", INSTALL, "--root", tmp_path, "--bogus", check=False)
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_uninstall_keeps_config_and_store_unless_purged(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root)
    store = root / "var" / "lib" / "cgw" / "buffer.db"
    store.write_bytes(b"undelivered alarms")

    out = uninstall(root)
    assert "not yet delivered" in out
    assert not (root / "opt" / "cgw").exists()
    assert not (root / "etc" / "systemd" / "system" / "cgw.service").exists()
    assert not (root / "usr" / "local" / "bin" / "cgw").is_symlink()
    assert (root / "etc" / "cgw" / "gateway.yaml").is_file()
    assert (root / "etc" / "cgw" / "credentials" / "local-mqtt-password").is_file()
    assert store.read_bytes() == b"undelivered alarms"
    assert "Nothing changed" in uninstall(root)

    purged = uninstall(root, "--purge")
    assert "deleted with any alarms and events it has not delivered" in purged
    assert not (root / "etc" / "cgw").exists()
    assert not (root / "var" / "lib" / "cgw").exists()
    assert not (root / "etc" / "mosquitto" / "conf.d" / "cgw-local.conf").exists()
    assert not (root / "etc" / "mosquitto" / "cgw.acl").exists()
    assert "Nothing changed" in uninstall(root, "--purge")


# -- the local broker config ------------------------------------------------------------------


def connack(port: int, username: str | None = None, password: str | None = None) -> int:
    """The return code of an MQTT 3.1.1 CONNECT (0 accepted, 5 not authorised)."""

    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = field("MQTT") + bytes([4, flags]) + (10).to_bytes(2, "big") + field("t-install")
    body += (field(username) if username else b"") + (field(password) if password else b"")
    assert len(body) < 128  # one-byte remaining length
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        reply = sock.recv(4)
    assert reply[:2] == b"\x20\x02", reply
    return reply[3]


def staged_broker_conf(mosquitto_dir: Path, workdir: Path, ports: dict[str, int]) -> str:
    """The broker files staged under ``mosquitto_dir`` as one config for a test broker.

    Paths under /etc/mosquitto move to ``mosquitto_dir``; each ``listener PORT ADDR`` line whose
    PORT is a key of ``ports`` moves to that port; plus what Debian's mosquitto.conf adds, and
    the test user (see tests/support/mosquitto.py).
    """
    conf = "".join(
        (mosquitto_dir / "conf.d" / name).read_text()
        for name in ("cgw-local.conf", "cgw-lan.conf")
        if (mosquitto_dir / "conf.d" / name).is_file()
    )
    for shipped, port in ports.items():
        conf = conf.replace(f"listener {shipped} 127.0.0.1", f"listener {port} 127.0.0.1")
    conf = conf.replace("/etc/mosquitto/", f"{mosquitto_dir}/")
    user = pwd.getpwuid(os.geteuid()).pw_name
    return conf + f"persistence true\npersistence_location {workdir}/\nuser {user}\n"


@contextlib.contextmanager
def broker_running(conf: str, workdir: Path, ports: list[int]) -> Iterator[None]:
    """mosquitto with ``conf`` until the block ends (stopped by PID); waits for ``ports``."""
    (workdir / "mosquitto.conf").write_text(conf)
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(workdir / "mosquitto.conf")], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(
                            (workdir / "mosquitto.log").read_text(errors="replace")
                        ) from None
                    time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def local_broker(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """mosquitto running config/mosquitto/local.conf (paths and port moved into tmp_path)."""
    if not (os.access(MOSQUITTO, os.X_OK) and shutil.which("mosquitto_passwd")):
        pytest.skip("mosquitto is not installed")
    password = "local-broker-test-password"
    mosq = tmp_path / "mosquitto"
    (mosq / "conf.d").mkdir(parents=True)
    passwd = mosq / "cgw.passwd"
    passwd.write_text(f"cgw:{password}\n")
    passwd.chmod(0o600)
    run("mosquitto_passwd", "-U", passwd)
    (mosq / "cgw.acl").write_text("user cgw\n")
    conf = LOCAL_CONF.read_text()
    assert "listener 1883 127.0.0.1" in conf
    assert "password_file /etc/mosquitto/cgw.passwd" in conf
    assert "acl_file /etc/mosquitto/cgw.acl" in conf
    (mosq / "conf.d" / "cgw-local.conf").write_text(conf)
    port = free_port()
    with broker_running(staged_broker_conf(mosq, tmp_path, {"1883": port}), tmp_path, [port]):
        yield port, password


def test_local_broker_refuses_anonymous_clients(local_broker: tuple[int, str]) -> None:
    port, password = local_broker
    assert connack(port) == 5
    assert connack(port, "cgw", "wrong-password") == 5
    assert connack(port, "cgw", password) == 0
