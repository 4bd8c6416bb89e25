"""Load and validate the config file, completely, before anything touches hardware.

``load_config`` either returns a valid ``Config`` or raises ``ConfigError`` listing *every*
problem as ``key.path[index]: reason``. Device profiles are merged into the devices that name
them first, so a profile's points are checked like any other.
"""

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config import checks, welfare
from gateway.config.base import merge_points
from gateway.config.doors import (
    DoorTerminalConfig,
    check_mapping,
    check_terminals,
    resolve_door_payload,
)
from gateway.config.modbus import ProfileConfig, check_points
from gateway.config.models import Config
from gateway.config.mqtt_devices import (
    FilterIndex,
    MqttButtonConfig,
    check_buttons,
    profiles_once,
    resolve_payload,
)
from gateway.config.mqtt_json import apply_json_profile, json_profile_target
from gateway.config.notify import check_modem_ports
from gateway.config.paths import resolve_paths
from gateway.config.push_checks import check_push_entries
from gateway.core.errors import ConfigError
from gateway.profiles import SHIPPED

BUILTIN_PROFILES = SHIPPED
_UNION_TAGS = frozenset(
    {"modbus", "modbus_tcp", "modbus_rtu_over_tcp", "modbus_rtu", "gpio", "mqtt_button"}
    | {"door_terminal", "mqtt_json", "http_push"}
    | {"threshold", "contact", "offline", "sensor_fault"}
    | {"door", "button", "point"}  # welfare signs
)


def format_loc(loc: Sequence[int | str]) -> str:
    """``('devices', 2, 'modbus', 'points', 0)`` -> ``devices[2].points[0]``."""
    out = ""
    prev: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(prev, int) and part in _UNION_TAGS:
            pass  # pydantic names the union member it tried; the user never wrote that key
        elif "[" in part or part.startswith("function-"):
            pass  # validator wrappers
        else:
            out += f".{part}" if out else part
        prev = part
    return out or "(top level)"


def error_lines(
    exc: ValidationError, prefix: str = "", skip: frozenset[str] = frozenset()
) -> list[str]:
    """One ``path: reason`` line per error; ``skip`` names paths whose missing/empty is no error."""
    lines = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        path = format_loc(err["loc"])
        if err["type"] in ("missing", "too_short") and path in skip:
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] in ("path_not_file", "path_not_directory"):
            msg = f"{msg}: {err['input']}"
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # pydantic reports these at the item; the key the user got wrong is the tag
            path += "." + str(err.get("ctx", {}).get("discriminator", "kind")).strip("'")
            if err["type"] == "union_tag_not_found":
                msg = "required key is missing"
        if prefix and path == "(top level)":
            lines.append(f"{prefix.rstrip('.')}: {msg}")  # a model-level error of the item
        else:
            lines.append(f"{prefix}{path}: {msg}")
    return lines


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning OS and syntax errors into ``ConfigError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        pos = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}{pos}: invalid YAML: {reason}"]) from exc


def load_profile(path: Path) -> dict[str, Any]:
    """Read one profile file and check its points; raises ``ConfigError``."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise ConfigError([f"{path}: a profile is a mapping with a 'points' list"])
    problems = []
    if data.get("name") != path.stem:
        problems.append(f"{path}: name: must be {path.stem!r} (the file name)")
    try:
        ProfileConfig.model_validate(data)
    except ValidationError as exc:
        problems += error_lines(exc, prefix=f"{path}: ")
    if problems:
        raise ConfigError(problems)
    return data


def profile_dirs(extra: Iterable[Path], base_dir: Path) -> list[Path]:
    """Where profiles are looked up, in order: ``profile_dirs`` (relative to ``base_dir``, the
    config's folder), ``<base_dir>/profiles``, then the shipped ones."""
    return [base_dir / d for d in extra] + [base_dir / "profiles", BUILTIN_PROFILES]


def modbus_profiles(dirs: Iterable[Path]) -> list[ProfileConfig]:
    """Every Modbus profile in ``dirs``, the first of each name (as a device would find it);
    files that do not load as a profile are left out (``cgw check-config`` names them)."""
    found: dict[str, ProfileConfig] = {}
    for folder in dirs:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
            if path.stem in found:
                continue
            try:
                found[path.stem] = ProfileConfig.model_validate(load_profile(path))
            except ConfigError:
                continue
    return list(found.values())


def _find_profile(name: str, dirs: Iterable[Path]) -> Path | None:
    for folder in dirs:
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


def _apply_profiles(raw: dict[str, Any], dirs: list[Path]) -> tuple[list[str], frozenset[str]]:
    """Merge profiles into devices; the problems, and the ``points`` paths left unmerged."""
    problems: list[str] = []
    unmerged: set[str] = set()
    devices = raw.get("devices")
    if not isinstance(devices, list):
        return problems, frozenset()
    for i, dev in enumerate(devices):
        target = json_profile_target(dev, f"devices[{i}]")  # mqtt_json, http_push readings
        if target is not None:
            found_problems = apply_json_profile(target[0], target[1], dirs[:-1])
            problems += found_problems
            unmerged |= {f"{target[1]}.points"} if found_problems else set()
            continue
        if not isinstance(dev, dict) or dev.get("profile") is None or dev.get("kind") != "modbus":
            continue  # (an MQTT button's profile is a payload mapping, resolved later)
        name = dev["profile"]
        found = _find_profile(str(name), dirs)
        if found is None:
            searched = ", ".join(str(d) for d in dirs)
            problems.append(f"devices[{i}].profile: unknown profile {name!r} (searched {searched})")
            unmerged.add(f"devices[{i}].points")
            continue
        try:
            profile = load_profile(found)
        except ConfigError as exc:
            problems += exc.errors
            unmerged.add(f"devices[{i}].points")
            continue
        own = dev.get("points") or []
        if not isinstance(own, list):
            continue  # the model reports the wrong type
        dev["points"] = merge_points(profile["points"], own)
        for key in ("max_block", "max_gap"):
            if key in profile and key not in dev:
                dev[key] = profile[key]
    return problems, frozenset(unmerged)


def check_references(cfg: Config) -> list[str]:
    """Cross-field rules pydantic cannot see from inside one model."""
    problems: list[str] = []
    buses: dict[str, int] = {}
    for i, bus in enumerate(cfg.buses):
        if bus.id in buses:
            problems.append(
                f"buses[{i}].id: duplicate bus id {bus.id!r} (also buses[{buses[bus.id]}])"
            )
        buses.setdefault(bus.id, i)
    devices: dict[str, int] = {}
    units: dict[tuple[str, int], int] = {}
    for i, dev in enumerate(cfg.devices):
        where = f"devices[{i}]"
        if dev.id in devices:
            problems.append(
                f"{where}.id: duplicate device id {dev.id!r} (also devices[{devices[dev.id]}])"
            )
        devices.setdefault(dev.id, i)
        if dev.kind != "modbus":
            continue
        if dev.bus not in buses:
            problems.append(f"{where}.bus: unknown bus {dev.bus!r}")
            continue
        bus = cfg.buses[buses[dev.bus]]
        key = (dev.bus, dev.unit_id)
        if key in units:
            problems.append(
                f"{where}.unit_id: unit {dev.unit_id} is already used on bus {dev.bus!r}"
                f" by devices[{units[key]}]"
            )
        units.setdefault(key, i)
        if dev.interval < bus.request_budget:
            problems.append(
                f"{where}.interval: {dev.interval} s is shorter than one request's worst case"
                f" on bus {dev.bus!r} ({bus.timeout} s x {bus.retries + 1} attempts)"
            )
        problems += check_points(dev.points, where, dev.max_block)
    doors = {d.id for dev in cfg.terminals for d in dev.doors}
    known = checks.device_ids(cfg) | doors  # a door alarm names the door, a fleet its devices
    return (
        problems
        + _check_buttons(cfg)
        + _check_doors(cfg)
        + checks.check_json_entries(cfg)
        + check_push_entries(cfg)
        + _check_alarm_refs(cfg, known)
        + checks.check_rule_names(cfg)
        + checks.check_listeners(cfg)
        + _check_welfare(cfg, doors, known)
        + check_modem_ports(cfg.channels)
    )


def _check_welfare(cfg: Config, doors: set[str], devices: set[str]) -> list[str]:
    if cfg.welfare is None:
        return []
    ladders = {ld.id for ld in cfg.alarms.ladders}
    return welfare.check_references(cfg.welfare, doors, devices, ladders, cfg.privacy is not None)


def _check_doors(cfg: Config) -> list[str]:
    """Door terminals: a local broker, a privacy key, distinct ids and topics, mappings."""
    indexed = [(i, d) for i, d in enumerate(cfg.devices) if isinstance(d, DoorTerminalConfig)]
    if not indexed:
        return []
    first = f"devices[{indexed[0][0]}]"
    problems: list[str] = []
    if cfg.local_broker is None:
        problems.append(f"{first}: a door_terminal needs a 'local_broker' section")
    if cfg.privacy is None:
        problems.append(
            f"{first}: a door_terminal needs a 'privacy' section (the key that pseudonymises"
            " resident ids)"
        )
    problems += check_terminals([d for _, d in indexed], [f"devices[{i}]" for i, _ in indexed])
    buttons = [d for d in cfg.devices if isinstance(d, MqttButtonConfig)]
    button_topics = FilterIndex()
    for k, button in enumerate(buttons):
        button_topics.add(button.topic, k)
    mapping = profiles_once(resolve_door_payload, list(cfg.profile_dirs))
    for i, term in indexed:
        for k in sorted(button_topics.overlapping(term.topic)):
            button = buttons[k]
            problems.append(
                f"devices[{i}].topic: {term.topic!r} overlaps button {button.id} ({button.topic!r})"
            )
        try:
            problems += [f"devices[{i}]: {p}" for p in check_mapping(term, mapping(term))]
        except ConfigError as exc:
            problems += [f"devices[{i}].profile: {e}" for e in exc.errors]
    return problems


def _check_buttons(cfg: Config) -> list[str]:
    """MQTT buttons: a local broker to listen on, distinct topics, payload mappings found."""
    indexed = [(i, d) for i, d in enumerate(cfg.devices) if isinstance(d, MqttButtonConfig)]
    if not indexed:
        return []
    problems: list[str] = []
    if cfg.local_broker is None:
        problems.append(f"devices[{indexed[0][0]}]: an mqtt_button needs a 'local_broker' section")
    buttons = [d for _, d in indexed]
    problems += check_buttons(buttons, [f"devices[{i}]" for i, _ in indexed])
    mapping = profiles_once(resolve_payload, list(cfg.profile_dirs))
    for i, button in indexed:
        try:
            mapping(button)
        except ConfigError as exc:
            problems += [f"devices[{i}].profile: {e}" for e in exc.errors]
    return problems


def _check_alarm_refs(cfg: Config, devices: set[str]) -> list[str]:
    """Alarm rules name devices that exist; ladders name channels that exist."""
    problems: list[str] = []
    channels = {"log"} | {c.id for c in getattr(cfg, "channels", [])}
    for i, rule in enumerate(cfg.alarms.rules):
        named = (
            ([] if rule.device == "*" else [rule.device])
            if rule.kind == "contact"
            else rule.devices
        )
        for dev in named if isinstance(named, list) else []:
            if dev not in devices:
                problems.append(f"alarms.rules[{i}]: unknown device {dev!r}")
    for i, ladder in enumerate(cfg.alarms.ladders):
        for j, tier in enumerate(ladder.tiers):
            for name in tier.channels:
                if name not in channels:
                    problems.append(
                        f"alarms.ladders[{i}].tiers[{j}].channels: unknown channel {name!r}"
                        f" (known: {', '.join(sorted(channels))})"
                    )
    return problems


def validate(raw: Any, base_dir: Path) -> Config:
    """Validate an already-parsed config document; raises ``ConfigError`` with every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): the config must be a mapping of keys"])
    extra_dirs = raw.get("profile_dirs") or []
    dirs = profile_dirs([Path(str(d)) for d in extra_dirs] if isinstance(extra_dirs, list) else [],
                        base_dir)  # fmt: skip
    problems, unmerged = _apply_profiles(raw, dirs)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        # a device whose profile failed lacks the profile's points: that is no second error
        problems += error_lines(exc, skip=unmerged)
        problems += _check_the_rest(raw, exc)
        raise ConfigError(checks.label(problems, raw)) from None
    problems += check_references(cfg)
    if problems:
        raise ConfigError(checks.label(problems, raw))
    return cfg


def _check_the_rest(raw: dict[str, Any], exc: ValidationError) -> list[str]:
    """The cross-field problems of the items that did validate, so none hides behind another."""
    doc, maps, removed = checks.without_failed(raw, [tuple(e["loc"]) for e in exc.errors()])
    try:
        rest = Config.model_validate(doc)
    except ValidationError:
        return []
    gone = re.compile("unknown (?:device|bus) '(?:" + "|".join(map(re.escape, removed)) + ")'")
    lines = [ln for ln in check_references(rest) if not (removed and gone.search(ln))]
    return checks.renumber(lines, maps)


def load_config(path: Path) -> Config:
    """Read, merge profiles into and validate the config file at ``path``.

    Relative paths inside the file (store, certificates, secrets) are taken relative to the
    file's folder, so a config and its secrets can move together.
    """
    raw = read_yaml(path)
    base = path.resolve().parent
    if isinstance(raw, dict):
        resolve_paths(raw, base)
    return validate(raw, base)
