"""Checks a config must pass that no single model can see: names rules use, listeners, ports.

Contract:
- ``check_rule_names(cfg)`` holds every alarm rule to the names its devices really have: a
  contact rule's ``input`` must be an input of its device (a GPIO input, an MQTT button's
  input, a Modbus bit point, a door's ``forced``/``held_open``, a terminal's ``tamper``), and a
  threshold rule's ``point`` a numeric point of each device it names (of at least one device
  when it names ``*``). An mqtt_json device's bool points are its inputs, its number points
  the points a threshold rule may compare. A rule that cannot fire is an error, with a "did
  you mean" hint: at run time its device's events would match nothing and vanish.
- ``check_listeners(cfg)`` refuses two of the gateway's own listeners on one port of one host
  (the daemon would crash at start, and systemd would restart it every two seconds).
- ``warnings(cfg)`` lists what is not wrong in the file but will fail on this machine now
  (a serial port that does not exist yet): ``check-config`` prints them and still passes.
- ``label(lines, raw)`` adds each list item's id to an error's position:
  ``devices[2].unit_id`` becomes ``devices[2] (th-court).unit_id``.
All return plain lines in the loader's ``key.path: reason`` form; none raises.
"""

import copy
import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.config.alarms import ContactRuleConfig, ThresholdRuleConfig
from gateway.config.doors import DoorTerminalConfig
from gateway.config.gpio import GpioDeviceConfig
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.modbus import ModbusDeviceConfig, ModbusRtuBusConfig
from gateway.config.models import Config, DeviceConfig
from gateway.config.mqtt_devices import (
    FilterIndex,
    MqttButtonConfig,
    profiles_once,
    resolve_payload,
)
from gateway.config.mqtt_json import MqttJsonDeviceConfig, check_json_devices
from gateway.core.errors import ConfigError

DOOR_INPUTS = ("forced", "held_open")  # contacts a door raises (gateway.pipeline.inputs)
TERMINAL_INPUTS = ("tamper",)


def hint(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'pm25'?)`` when ``name`` is close to one of ``known``, else ``""``."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(names: Iterable[str]) -> str:
    ordered = sorted(names)
    return ", ".join(ordered) if ordered else "none"


def _mapped(dev: DeviceConfig) -> DeviceConfig:
    """An http_push entry as the broker kind whose mapping it uses; others as they are."""
    if isinstance(dev, HttpPushDeviceConfig) and dev.readings is not None:
        return dev.as_json()
    if isinstance(dev, HttpPushDeviceConfig) and dev.door is not None:
        return dev.as_terminal()
    return dev


def contact_inputs(cfg: Config) -> dict[str, set[str] | None]:
    """Per device (and door), the contact inputs it can report; None means "any name"."""
    out: dict[str, set[str] | None] = {}
    mapping_of = profiles_once(resolve_payload, list(cfg.profile_dirs))
    for dev in map(_mapped, cfg.devices):
        if isinstance(dev, GpioDeviceConfig):
            out[dev.id] = {i.name for i in dev.inputs}
        elif isinstance(dev, ModbusDeviceConfig):
            out[dev.id] = {p.name for p in dev.active_points if p.type == "bool"}
        elif isinstance(dev, MqttButtonConfig):
            try:
                mapping = mapping_of(dev)
            except ConfigError:
                out[dev.id] = None  # reported by the button checks
                continue
            out[dev.id] = None if mapping.input_path is not None else {mapping.fixed_input}
        elif isinstance(dev, DoorTerminalConfig):
            out[dev.id] = set(TERMINAL_INPUTS)
            for door in dev.doors:
                out[door.id] = set(DOOR_INPUTS)
        elif isinstance(dev, HttpPushDeviceConfig) and dev.records and cfg.records is not None:
            kinds = [cfg.records.kind(k) for k in dev.records]  # an urgent record: its kind
            out[dev.id] = {k.id for k in kinds if k is not None and k.urgent is not None}
        elif isinstance(dev, MqttJsonDeviceConfig):  # bool points are contacts, as on Modbus
            for device in dev.device_ids:
                out[device] = {p.name for p in dev.active_points if p.type == "bool"}
    return out


def numeric_points(cfg: Config) -> dict[str, set[str]]:
    """Per Modbus or mqtt_json device, the names of its enabled numeric points."""
    out: dict[str, set[str]] = {}
    for dev in map(_mapped, cfg.devices):
        if isinstance(dev, ModbusDeviceConfig):
            out[dev.id] = {p.name for p in dev.active_points if p.type != "bool"}
        elif isinstance(dev, MqttJsonDeviceConfig):
            for device in dev.device_ids:
                out[device] = {p.name for p in dev.active_points if p.type == "number"}
    return out


def check_json_entries(cfg: Config) -> list[str]:
    """mqtt_json entries: a local broker; device ids and topics no other entry or kind has."""
    entries = [(i, d) for i, d in enumerate(cfg.devices) if isinstance(d, MqttJsonDeviceConfig)]
    if not entries:
        return []
    problems: list[str] = []
    if cfg.local_broker is None:
        problems.append(f"devices[{entries[0][0]}]: an mqtt_json needs a 'local_broker' section")
    others: dict[str, str] = {}
    topics, owners = FilterIndex(), list[str]()
    for i, dev in enumerate(cfg.devices):
        if isinstance(dev, MqttJsonDeviceConfig):
            continue
        for device in dev.device_ids if isinstance(dev, HttpPushDeviceConfig) else [dev.id]:
            others.setdefault(device, f"devices[{i}]")
        mapped = _mapped(dev)
        for door in mapped.doors if isinstance(mapped, DoorTerminalConfig) else []:
            others.setdefault(door.id, f"devices[{i}] (a door)")
        if isinstance(dev, MqttButtonConfig | DoorTerminalConfig):  # on the broker
            for topic in (dev.topic, getattr(dev, "heartbeat_topic", None)):
                if topic is not None:
                    topics.add(topic, len(owners))
                    owners.append(f"devices[{i}]")
    labels = [f"devices[{i}]" for i, _ in entries]
    return problems + check_json_devices([d for _, d in entries], labels, others, topics, owners)


def device_ids(cfg: Config) -> set[str]:
    """Every device a config has: an mqtt_json fleet's listed ids, not its entry's id."""
    return {
        i
        for d in cfg.devices
        for i in (
            d.device_ids if isinstance(d, MqttJsonDeviceConfig | HttpPushDeviceConfig) else [d.id]
        )
    }


def check_rule_names(cfg: Config) -> list[str]:
    """Every rule's input or point exists on the devices it names (see the module docstring)."""
    problems: list[str] = []
    inputs = contact_inputs(cfg)
    points = numeric_points(cfg)
    for i, rule in enumerate(cfg.alarms.rules):
        where = f"alarms.rules[{i}]"
        if isinstance(rule, ContactRuleConfig):
            problems += _contact(rule, where, inputs)
        elif isinstance(rule, ThresholdRuleConfig):
            problems += _threshold(rule, where, points, device_ids(cfg))
    return problems


def _contact(
    rule: ContactRuleConfig, where: str, inputs: Mapping[str, set[str] | None]
) -> list[str]:
    if rule.input == "*":
        return []
    if rule.device == "*":
        if any(names is None or rule.input in names for names in inputs.values()):
            return []
        every = {n for names in inputs.values() if names for n in names}
        return [
            f"{where}.input: no device has an input {rule.input!r}"
            f" (inputs: {_listing(every)}){hint(rule.input, every)}"
        ]
    names = inputs.get(rule.device)
    if names is None or rule.input in names:
        return []  # an unknown device is reported by the reference check
    return [
        f"{where}.input: device {rule.device!r} has no input {rule.input!r}"
        f" (its inputs: {_listing(names)}){hint(rule.input, names)}"
    ]


def _threshold(
    rule: ThresholdRuleConfig, where: str, points: Mapping[str, set[str]], known: set[str]
) -> list[str]:
    if rule.devices == "*":
        if any(rule.point in names for names in points.values()):
            return []
        every = {n for names in points.values() for n in names}
        return [
            f"{where}.point: no device has a point {rule.point!r}"
            f" (points: {_listing(every)}){hint(rule.point, every)}"
        ]
    out: list[str] = []
    for dev in rule.devices:
        names = points.get(dev)
        if dev not in known:
            continue  # an unknown device is reported by the reference check
        if names is None:
            out.append(f"{where}.devices: device {dev!r} has no numeric points to compare")
        elif rule.point not in names:
            out.append(
                f"{where}.point: device {dev!r} has no point {rule.point!r}"
                f" (its points: {_listing(names)}){hint(rule.point, names)}"
            )
    return out


def _hosts_overlap(a: str, b: str) -> bool:
    """Whether listening on ``a`` and on ``b`` can take the same address."""
    wildcard = {"0.0.0.0", "::", ""}
    if a in wildcard or b in wildcard:
        return True
    names = {"localhost": "127.0.0.1"}
    a, b = names.get(a.lower(), a), names.get(b.lower(), b)
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def check_listeners(cfg: Config) -> list[str]:
    """No two of the gateway's listeners on the same port of overlapping hosts."""
    listeners: list[tuple[str, str, int]] = []
    if cfg.api is not None:
        listeners.append(("api", cfg.api.host, cfg.api.port))
    if cfg.monitor is not None:
        listeners.append(("monitor", cfg.monitor.host, cfg.monitor.port))
    if cfg.console is not None:
        listeners.append(("console", cfg.console.host, cfg.console.port))
    if cfg.http_push is not None:
        listeners.append(("http_push", cfg.http_push.host, cfg.http_push.port))
    problems: list[str] = []
    for k, (name, host, port) in enumerate(listeners):
        for other, other_host, other_port in listeners[:k]:
            if port == other_port and _hosts_overlap(host, other_host):
                problems.append(
                    f"{name}.port: {host}:{port} is already taken by {other} ({other_host}:{port})"
                )
    return problems


def warnings(cfg: Config) -> list[str]:
    """What will fail on this machine now, though the file is right (see the docstring)."""
    out: list[str] = []
    for i, bus in enumerate(cfg.buses):
        if isinstance(bus, ModbusRtuBusConfig) and not Path(bus.port).exists():
            out.append(
                f"buses[{i}] ({bus.id}).port: {bus.port} does not exist on this machine"
                " (adapter unplugged, or another name?): the bus will report it until it appears"
            )
    for i, dev in enumerate(cfg.devices):
        wildcard = isinstance(dev, MqttButtonConfig) and dev.device_from_topic is not None
        if wildcard and not getattr(dev, "devices", None):
            out.append(
                f"devices[{i}] ({dev.id}).devices: empty, so any id in the topic is a device:"
                " list the buttons' ids, or a stranger on the broker can raise alarms"
                " under names of their own"
            )
    return out


_ITEM = re.compile(r"^(devices|buses|channels|alarms\.rules|alarms\.ladders)\[(\d+)\]")


def label(lines: Sequence[str], raw: Any) -> list[str]:
    """Each line with the id of the list item it starts with, where the item has one."""

    def item_id(section: str, index: int) -> str | None:
        node: Any = raw
        for key in section.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, list) or index >= len(node) or not isinstance(node[index], dict):
            return None
        ident = node[index].get("id")
        return str(ident) if isinstance(ident, str | int) else None

    out = []
    for line in lines:
        m = _ITEM.match(line)
        ident = item_id(m.group(1), int(m.group(2))) if m else None
        if m and ident and not line[m.end() :].startswith(" ("):
            line = f"{line[: m.end()]} ({ident}){line[m.end() :]}"
        out.append(line)
    return out


_LISTS: tuple[tuple[str, ...], ...] = (
    ("devices",),
    ("buses",),
    ("channels",),
    ("alarms", "rules"),
    ("alarms", "ladders"),
)
Pruned = tuple[dict[str, Any], dict[str, dict[int, int]], set[str]]


def without_failed(raw: dict[str, Any], failed: Iterable[tuple[int | str, ...]]) -> Pruned:
    """``raw`` less what failed validation, so the rest can still be checked.

    A failed list item (a device, a rule...) is removed whole; any other failed key is removed
    itself (an unknown key goes, an optional one falls back to its default; a required one
    makes the rest fail again, and then nothing more is checked). Returns the pruned document,
    per list its map from new index to original index, and the ids of the removed items and
    of their doors (references to them are no error of their own).
    """
    pruned = copy.deepcopy(raw)
    drop: dict[tuple[str, ...], set[int]] = {}
    for loc in failed:
        for keys in _LISTS:
            n = len(keys)
            index = loc[n] if len(loc) > n else None
            if tuple(loc[:n]) == keys and isinstance(index, int):
                drop.setdefault(keys, set()).add(index)
                break
        else:
            _remove_key(pruned, loc)
    maps: dict[str, dict[int, int]] = {}
    removed: set[str] = set()
    for keys, indexes in drop.items():
        parent = _node(pruned, keys[:-1])
        items = parent.get(keys[-1]) if parent is not None else None
        if parent is None or not isinstance(items, list):
            continue
        for i in indexes:
            removed |= _ids(items[i]) if i < len(items) else set()
        kept = [i for i in range(len(items)) if i not in indexes]
        parent[keys[-1]] = [items[i] for i in kept]
        maps[".".join(keys)] = dict(enumerate(kept))
    return pruned, maps, removed


def _node(doc: Any, keys: Sequence[int | str]) -> dict[str, Any] | None:
    for key in keys:
        if isinstance(doc, dict) and isinstance(key, str):
            doc = doc.get(key)
        elif isinstance(doc, list) and isinstance(key, int) and key < len(doc):
            doc = doc[key]
        else:
            return None
    return doc if isinstance(doc, dict) else None


def _remove_key(doc: dict[str, Any], loc: Sequence[int | str]) -> None:
    parent = _node(doc, loc[:-1])
    if parent is not None and loc and isinstance(loc[-1], str):
        parent.pop(loc[-1], None)


def _ids(item: Any) -> set[str]:
    """The id of a list item and of the doors it holds."""
    if not isinstance(item, dict):
        return set()
    out = {item["id"]} if isinstance(item.get("id"), str) else set()
    doors = item.get("doors")
    for door in doors if isinstance(doors, list) else []:
        if isinstance(door, dict) and isinstance(door.get("id"), str):
            out.add(door["id"])
    return out


def renumber(lines: Iterable[str], maps: Mapping[str, Mapping[int, int]]) -> list[str]:
    """Rewrite ``section[new]`` positions in ``lines`` back to the original indexes."""
    out = list(lines)
    for section, index in maps.items():
        pattern = re.compile(r"(?<![\w.])" + re.escape(section) + r"\[(\d+)\]")

        def back(m: re.Match[str], section: str = section, index: Mapping[int, int] = index) -> str:
            return f"{section}[{index.get(int(m.group(1)), int(m.group(1)))}]"

        out = [pattern.sub(back, line) for line in out]
    return out
