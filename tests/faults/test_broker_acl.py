"""Fault finding 6: the shipped local broker gives each device class only its own topics.

``install.sh`` stages a complete install into a temporary root (its config check passing, so
the logins and the ACL are generated from ``config/examples/gateway.pi.yaml``), then a real
mosquitto runs the staged ``cgw-local.conf``, ``cgw-lan.conf``, password file and ACL, with
only the paths and ports moved. Every forbidden action is tried as a hostile device would, with
MQTT 5 so that the broker says why (0x87 not authorised); what must still work is tried too.
"""

import os
import queue
import re
import secrets
import shutil
import socket
import ssl
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.cli import broker_acl
from gateway.cli import main as cli
from gateway.commands.signing import keygen
from gateway.config import load_config
from tests.integration.test_install import (
    CREDENTIALS,
    INSTALL,
    PI_CONFIG,
    broker_running,
    connack,
    mode,
    run,
    staged_broker_conf,
)
from tests.support.mosquitto import MOSQUITTO_BIN
from tests.support.ports import free_port

NOT_AUTHORISED = 0x87
NO_SUBSCRIBERS = 0x10
TIMEOUT = 10.0
DOOR_EVENT = b'{"personId":"3301021990","personName":"Wang","faceImage":"/9j/4AAQ","result":0}'

pytestmark = pytest.mark.skipif(
    not (os.access(MOSQUITTO_BIN, os.X_OK) and shutil.which("mosquitto_passwd")),
    reason="mosquitto is not installed",
)


def stage_install(root: Path) -> str:
    """install.sh into ``root`` with the Pi config's secrets in place and ``cgw`` installed."""
    etc = root / "etc" / "cgw"
    creds = etc / "credentials"
    creds.mkdir(parents=True, mode=0o700)
    names = set(re.findall(re.escape(CREDENTIALS) + r"([A-Za-z0-9._-]+)", PI_CONFIG.read_text()))
    for name in names - {"local-mqtt-password"}:  # that one install.sh generates
        (creds / name).write_text("0123456789abcdef" * 4 + "\n")
    (creds / "privacy-key").write_text(secrets.token_hex(32) + "\n")
    keygen(root / "keys")
    shutil.copy(root / "keys" / "platform.pub", creds / "command-pubkey")
    for secret in creds.iterdir():
        secret.chmod(0o600)
    (etc / "tls").mkdir()
    for public in ("platform-ca.crt", "gw-01.crt"):
        (etc / "tls" / public).write_text("-----BEGIN CERTIFICATE-----\n")
    venv_bin = root / "opt" / "cgw" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "cgw").symlink_to(Path(sys.executable).with_name("cgw"))
    args = ("--root", root, "--no-venv", "--lan-listener", "127.0.0.1")
    return run("bash", INSTALL, *args).stdout


@dataclass(frozen=True)
class Site:
    """The staged install and the ports of the broker running its files."""

    root: Path
    first_install: str
    port: int
    lan_port: int

    def password(self, login: str) -> str:
        if login == "cgw":
            return (self.root / "etc/cgw/credentials/local-mqtt-password").read_text()
        return (self.root / f"etc/cgw/local-broker/{login}.password").read_text()

    @property
    def site_ca(self) -> Path:
        return self.root / "etc" / "cgw" / "tls" / "site-ca.crt"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("root")
    first = stage_install(root)
    work = tmp_path_factory.mktemp("broker")
    port, lan_port = free_port(), free_port()
    conf = staged_broker_conf(root / "etc" / "mosquitto", work, {"1883": port, "8883": lan_port})
    with broker_running(conf, work, [port, lan_port]):
        yield Site(root, first, port, lan_port)


class Peer:
    """An MQTT 5 client logged in as one broker user; records what it receives and each PUBACK."""

    def __init__(self, site: Site, user: str, *, lan: bool = False) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._acks: dict[int, int] = {}
        self._done = threading.Condition()
        self._connack: ReasonCode | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )  # fmt: skip
        client.username_pw_set(user, site.password(user))
        if lan:
            client.tls_set(ca_certs=str(site.site_ca))
        client.on_message = self._message
        client.on_publish = self._published
        client.on_subscribe = self._subscribed
        client.on_connect = self._connected
        client.connect("127.0.0.1", site.lan_port if lan else site.port)
        client.loop_start()
        self.client = client
        with self._done:
            connack = self._done.wait_for(lambda: self._connack, TIMEOUT)
        assert connack is not None, f"{user}: no CONNACK"
        assert not connack.is_failure, f"{user}: {connack}"

    # paho's callbacks (its network thread)

    def _connected(
        self, _c: mqtt.Client, _u: object, _f: object, code: ReasonCode, _p: object
    ) -> None:
        with self._done:
            self._connack = code
            self._done.notify_all()

    def _message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))

    def _published(
        self, _c: mqtt.Client, _u: object, mid: int, code: ReasonCode, _p: object
    ) -> None:
        self._ack(mid, code.value)

    def _subscribed(
        self, _c: mqtt.Client, _u: object, mid: int, _codes: object, _p: object
    ) -> None:
        self._ack(mid, 0)

    def _ack(self, mid: int, code: int) -> None:
        with self._done:
            self._acks[mid] = code
            self._done.notify_all()

    def _wait(self, mid: int) -> int:
        with self._done:
            assert self._done.wait_for(lambda: mid in self._acks, TIMEOUT), f"no ack for {mid}"
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """Publish at QoS 1; the PUBACK's reason code (0x87: refused by the ACL)."""
        return self._wait(self.client.publish(topic, payload, qos=1).mid)

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK.

        The broker writes its packets to a connection in order, so a SUBACK also proves that
        every message it had routed to this client before has arrived: the barrier the
        "received nothing" checks need.
        """
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        self._wait(mid)

    def received(self) -> list[tuple[str, bytes]]:
        """Everything received so far, after a barrier."""
        self.subscribe(f"barrier/{uuid.uuid4().hex}")
        out = []
        while not self.messages.empty():
            out.append(self.messages.get_nowait())
        return out

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(site: Site) -> Iterator[dict[str, Peer]]:
    """The gateway, a flat's SOS button and a door terminal, each with its own login."""
    made = {user: Peer(site, user) for user in ("cgw", "sos-flats", "facegate")}
    yield made
    for peer in made.values():
        peer.close()


# -- forbidden ---------------------------------------------------------------------------------


def test_anonymous_and_wrong_passwords_are_refused(site: Site) -> None:
    assert connack(site.port) == 5
    assert connack(site.port, "sos-flats", "not-the-password") == 5
    assert connack(site.port, "sos-flats", site.password("sos-flats")) == 0


def test_a_button_login_reads_no_door_events(peers: dict[str, Peer]) -> None:
    gateway, button, terminal = peers["cgw"], peers["sos-flats"], peers["facegate"]
    gateway.subscribe("facegate/+/event")
    for spy in ("#", "facegate/+/event", "facegate/FG-B7-1/cmd"):
        button.subscribe(spy)
    assert terminal.publish("facegate/FG-B7-1/event", DOOR_EVENT) == 0
    assert gateway.next_message() == ("facegate/FG-B7-1/event", DOOR_EVENT)
    assert gateway.publish("facegate/FG-B7-1/cmd", b'{"door":1}') in (0, NO_SUBSCRIBERS)
    assert button.received() == []


@pytest.mark.parametrize(
    ("login", "topic"),
    [
        ("sos-flats", "facegate/FG-B7-1/cmd"),  # opening a door without the signed channel
        ("sos-flats", "facegate/FG-B7-1/event"),  # a fake DOOR_FORCED
        ("sos-flats", "facegate/FG-B7-1/heartbeat"),
        ("facegate", "sos/flat-301/event"),  # another class's topic
        ("facegate", "facegate/FG-B7-1/cmd"),  # a terminal opening its own door
        ("sos-flats", "sos/flat-301/other"),  # outside its own filter
        ("cgw", "facegate/FG-B7-9/cmd"),  # a terminal that is not configured
        ("cgw", "sos/flat-301/event"),  # the gateway never fakes a device
    ],
)
def test_each_login_may_not_publish_outside_its_own_topics(
    peers: dict[str, Peer], login: str, topic: str
) -> None:
    gateway = peers["cgw"]
    gateway.subscribe(topic)
    peers["facegate"].subscribe("facegate/+/cmd")
    assert peers[login].publish(topic, b'{"event":"DOOR_FORCED","door":1}') == NOT_AUTHORISED
    assert gateway.received() == []
    assert peers["facegate"].received() == []


# -- allowed ------------------------------------------------------------------------------------


def test_each_device_class_reaches_the_gateway_and_commands_reach_the_terminal(
    peers: dict[str, Peer],
) -> None:
    gateway, button, terminal = peers["cgw"], peers["sos-flats"], peers["facegate"]
    for topic in ("sos/+/event", "facegate/+/event", "facegate/+/heartbeat"):
        gateway.subscribe(topic)
    terminal.subscribe("facegate/FG-B7-1/cmd")
    sent = [
        (button, "sos/flat-301/event", b'{"id":"e1","evt":"sos","state":"pressed"}'),
        (terminal, "facegate/FG-B7-1/event", DOOR_EVENT),
        (terminal, "facegate/FG-B7-1/heartbeat", b'{"status":"online"}'),
    ]
    for peer, topic, payload in sent:
        assert peer.publish(topic, payload) == 0
    assert [gateway.next_message() for _ in sent] == [(t, p) for _, t, p in sent]
    assert gateway.publish("facegate/FG-B7-1/cmd", b'{"door":1}') == 0
    assert terminal.next_message() == ("facegate/FG-B7-1/cmd", b'{"door":1}')
    assert gateway.received() == []
    assert terminal.received() == []


# -- the LAN listener ---------------------------------------------------------------------------


def test_the_lan_listener_refuses_plain_tcp(site: Site) -> None:
    with socket.create_connection(("127.0.0.1", site.lan_port), timeout=TIMEOUT) as sock:
        sock.sendall(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x0a\x00\x02tp")  # CONNECT
        try:
            reply = sock.recv(16)
        except ConnectionResetError:  # the broker ends the failed TLS handshake
            reply = b""
    assert not reply.startswith(b"\x20\x02"), reply  # never a CONNACK in plain text


def test_the_lan_listener_takes_tls_with_the_site_ca_and_a_login(site: Site) -> None:
    context = ssl.create_default_context(cafile=str(site.site_ca))
    with (
        socket.create_connection(("127.0.0.1", site.lan_port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x0a\x00\x02tp")  # anonymous
        assert sock.recv(4) == b"\x20\x02\x00\x05"  # not authorised
    button = Peer(site, "sos-flats", lan=True)
    try:
        assert button.publish("facegate/FG-B7-1/cmd") == NOT_AUTHORISED
        assert button.publish("sos/flat-301/event") == NO_SUBSCRIBERS
    finally:
        button.close()


def test_a_client_that_does_not_trust_the_site_ca_gets_no_connection(site: Site) -> None:
    context = ssl.create_default_context()  # the system's CAs only
    with (
        socket.create_connection(("127.0.0.1", site.lan_port), timeout=TIMEOUT) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")


# -- the installer -------------------------------------------------------------------------------


def test_install_generates_one_login_per_device_entry(site: Site) -> None:
    logins = site.root / "etc" / "cgw" / "local-broker"
    assert sorted(p.name for p in logins.iterdir()) == ["facegate.password", "sos-flats.password"]
    assert all(mode(p) == 0o600 for p in logins.iterdir())
    assert mode(logins) == 0o700
    users = [
        line.split(":")[0] for line in (site.root / "etc/mosquitto/cgw.passwd").read_text().split()
    ]
    assert sorted(users) == ["cgw", "facegate", "sos-flats"]
    assert "wrote /etc/mosquitto/cgw.acl from the config (2 device login(s))" in site.first_install
    again = run("bash", INSTALL, "--root", site.root, "--no-venv", "--lan-listener", "127.0.0.1")
    assert "Nothing changed" in again.stdout, again.stdout


def test_a_device_removed_from_the_config_loses_its_login(tmp_path: Path) -> None:
    root = tmp_path / "root"
    stage_install(root)
    config = root / "etc" / "cgw" / "gateway.yaml"
    text = config.read_text()
    config.write_text(
        text.replace(
            "  - kind: mqtt_button\n    id: sos-flats\n", "  - kind: mqtt_button\n    id: sos-b7\n"
        )
    )
    out = run("bash", INSTALL, "--root", root, "--no-venv").stdout
    assert "removed broker user sos-flats (no longer in the config)" in out
    assert "broker user sos-b7 set" in out
    passwd = (root / "etc/mosquitto/cgw.passwd").read_text()
    assert "sos-flats:" not in passwd
    assert "sos-b7:" in passwd
    assert "user sos-b7\ntopic write sos/+/event\n" in (root / "etc/mosquitto/cgw.acl").read_text()


# -- the generator --------------------------------------------------------------------------------


def site_config(site: Site, tmp_path: Path, edit: tuple[str, str] = ("", "")) -> Path:
    """The staged gateway.yaml with its secrets mapped (as install.sh does), optionally edited."""
    etc = site.root / "etc" / "cgw"
    text = (etc / "gateway.yaml").read_text().replace(CREDENTIALS, f"{etc}/credentials/")
    assert edit[0] in text
    path = etc / f"test-{tmp_path.name}.yaml"  # beside the original: relative paths resolve
    path.write_text(text.replace(*edit))
    return path


def test_the_acl_grants_each_login_exactly_its_topics(site: Site, tmp_path: Path) -> None:
    logins = broker_acl.broker_logins(load_config(site_config(site, tmp_path)))
    assert logins == [
        broker_acl.Login(
            "cgw",
            ("facegate/FG-B7-1/cmd",),
            ("sos/+/event", "facegate/+/event", "facegate/+/heartbeat"),
        ),
        broker_acl.Login("sos-flats", ("sos/+/event",), ()),
        broker_acl.Login(
            "facegate", ("facegate/+/event", "facegate/+/heartbeat"), ("facegate/FG-B7-1/cmd",)
        ),
    ]
    acl = (site.root / "etc" / "mosquitto" / "cgw.acl").read_text()
    assert acl == broker_acl.render_acl(logins)
    assert "user sos-flats\ntopic write sos/+/event\n\nuser facegate\n" in acl


def test_a_device_named_like_the_gateway_user_is_refused(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = site_config(site, tmp_path, ("id: sos-flats", "id: cgw"))
    assert cli.main(["broker-acl", "-c", str(config)]) == 2
    assert "'cgw' is the gateway's broker user" in capsys.readouterr().err


def test_a_topic_that_would_inject_acl_lines_is_refused(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    injected = 'topic: "sos/+/event\\ntopic read facegate/+/event"'
    config = site_config(site, tmp_path, ("topic: sos/+/event", injected))
    assert cli.main(["broker-acl", "-c", str(config)]) == 2
    assert "control characters" in capsys.readouterr().err
    assert cli.main(["broker-acl", "--logins", "-c", str(site_config(site, tmp_path))]) == 0
    assert capsys.readouterr().out == "sos-flats\nfacegate\n"


def test_install_stops_on_a_config_the_acl_cannot_express(tmp_path: Path) -> None:
    root = tmp_path / "root"
    stage_install(root)
    acl = (root / "etc/mosquitto/cgw.acl").read_text()
    config = root / "etc" / "cgw" / "gateway.yaml"
    config.write_text(config.read_text().replace("id: sos-flats\n", "id: cgw\n"))
    result = run("bash", INSTALL, "--root", root, "--no-venv", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cgw broker-acl failed" in result.stderr
    assert "/etc/cgw/gateway.yaml" in result.stderr
    assert "'cgw' is the gateway's broker user" in result.stderr
    assert (root / "etc/mosquitto/cgw.acl").read_text() == acl  # the last good one stays
