"""``cgw broker-acl``: the local broker's logins and ACL, derived from the gateway's config.

The community's mosquitto (``config/mosquitto/local.conf``) refuses anonymous clients and reads
its ACL from ``/etc/mosquitto/cgw.acl``, which ``systemd/install.sh`` writes with this command.
Contract of the ACL (mosquitto's default deny: whatever no line grants is refused):

- **One login per device entry** of the config (an ``mqtt_button``, a ``door_terminal`` or an
  ``mqtt_json``; a fleet behind one ``+`` topic shares it), named by the entry's ``id``. It may
  *publish* on its own topic filters only (a button: its ``topic``; a terminal: ``topic`` and
  ``heartbeat_topic``, its will included; an mqtt_json entry: ``topic`` and ``status_topic``)
  and a terminal may *read* its own command topics.
  It can read nothing else: no door events, no other class's topics, no ``$SYS``.
- **The gateway's own user** (``local_broker.username``, default ``cgw``) is the only one that
  reads the device topics (raw door events carry resident ids before pseudonymisation) and the
  only one that publishes unlock commands, on the configured terminals' command topics.
- Command topics are expanded per configured terminal (``facegate/FG-B7-1/cmd``), never a
  wildcard, so a terminal that is not configured receives no command.

``cgw broker-acl -c gateway.yaml`` prints the ACL file; ``--logins`` prints the device logins
instead, one a line, for the installer to give each a password. Exit codes: 0 done; 2 invalid
config, or a topic or login the ACL file cannot express safely (the message says which).
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config, load_config
from gateway.config.doors import DoorTerminalConfig
from gateway.config.mqtt_devices import MqttButtonConfig
from gateway.config.mqtt_json import MqttJsonDeviceConfig
from gateway.core.errors import ConfigError

COMMAND = "broker-acl"
DEFAULT_GATEWAY_USER = "cgw"  # the broker user install.sh creates for the gateway
EXIT_CONFIG = 2


@dataclass(frozen=True, slots=True)
class Login:
    """One broker user and the topics it may publish on and read (MQTT topic filters)."""

    name: str
    publish: tuple[str, ...]
    read: tuple[str, ...]


def command_topics(cfg: DoorTerminalConfig) -> tuple[str, ...]:
    """The terminals' command topics, one per configured terminal; none without commands."""
    template = cfg.command_topic
    if template is None:
        return ()
    return tuple(template.replace("{terminal}", terminal) for terminal in cfg.terminals)


def device_login(device: MqttButtonConfig | DoorTerminalConfig | MqttJsonDeviceConfig) -> Login:
    """The login of one device entry: it publishes its own topics, reads its own commands."""
    if isinstance(device, MqttButtonConfig):
        return Login(device.id, (device.topic,), ())
    if isinstance(device, MqttJsonDeviceConfig):
        topics = (device.topic, device.status_topic)
        return Login(device.id, tuple(t for t in topics if t is not None), ())
    return Login(device.id, (device.topic, device.heartbeat_topic), command_topics(device))


def broker_logins(cfg: Config) -> list[Login]:
    """The gateway's own user first, then one login per device on the local broker.

    Raises ``ConfigError`` for a device whose id is the gateway's user, or for a topic an ACL
    line cannot carry as it is (control characters, surrounding spaces).
    """
    gateway_user = (cfg.local_broker.username if cfg.local_broker else None) or DEFAULT_GATEWAY_USER
    devices = [
        d
        for d in cfg.devices
        if isinstance(d, MqttButtonConfig | DoorTerminalConfig | MqttJsonDeviceConfig)
    ]
    logins = [device_login(d) for d in devices]
    gateway = Login(
        gateway_user,
        tuple(t for login in logins for t in login.read),  # the commands it sends
        tuple(t for login in logins for t in login.publish),  # every device topic
    )
    problems = [
        f"devices: {login.name!r} is the gateway's broker user: rename the device"
        for login in logins
        if login.name == gateway_user
    ]
    for login in [gateway, *logins]:
        problems += [
            f"{login.name}: topic {topic!r}: control characters or surrounding spaces"
            " cannot be written in an ACL file"
            for topic in (*login.publish, *login.read)
            if topic != topic.strip() or any(ord(c) < 32 or ord(c) == 127 for c in topic)
        ]
    if problems:
        raise ConfigError(problems)
    return [gateway, *logins]


def render_acl(logins: list[Login]) -> str:
    """The mosquitto ``acl_file`` text granting each login exactly its topics."""
    lines = [
        "# The local broker's ACL, written by install.sh from /etc/cgw/gateway.yaml",
        "# (cgw broker-acl): edits are overwritten. Whatever is not granted here is refused.",
    ]
    for login in logins:
        lines += ["", f"user {login.name}"]
        lines += [f"topic write {t}" for t in dict.fromkeys(login.publish)]
        lines += [f"topic read {t}" for t in dict.fromkeys(login.read)]
    return "\n".join(lines) + "\n"


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``broker-acl`` to ``cgw``'s subcommands."""
    acl = sub.add_parser(COMMAND, help="print the local broker's ACL made from a config")
    acl.add_argument("-c", "--config", type=Path, required=True, help="config file (YAML)")
    acl.add_argument(
        "--logins", action="store_true", help="print the device logins instead, one a line"
    )


def run(args: argparse.Namespace) -> int:
    """Print the ACL (or the device logins) of ``args.config``; returns the exit code."""
    try:
        logins = broker_logins(load_config(args.config))
    except ConfigError as exc:
        print(f"{args.config}: {len(exc.errors)} error(s):", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    if args.logins:
        print("\n".join(login.name for login in logins[1:]))
    else:
        print(render_acl(logins), end="")
    return 0
