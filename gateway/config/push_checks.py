"""Checks of http_push entries that no single model can see (run by the loader).

An http_push entry needs the ``http_push`` listener section; one that carries door events
needs the ``privacy`` key (its person ids are pseudonymised as the broker terminals' are) and a
door mapping that resolves and fits its doors; the devices it names clash with no other
device's id. Plain lines in the loader's ``key.path: reason`` form; never raises.
"""

from gateway.config.doors import check_mapping, resolve_door_payload
from gateway.config.http_push import HttpPushDeviceConfig
from gateway.config.models import Config
from gateway.config.mqtt_devices import profiles_once
from gateway.core.errors import ConfigError


def check_push_entries(cfg: Config) -> list[str]:
    """Problems of the http_push entries of ``cfg`` (see the module docstring)."""
    indexed = [(i, d) for i, d in enumerate(cfg.devices) if isinstance(d, HttpPushDeviceConfig)]
    if not indexed:
        return []
    problems: list[str] = []
    if cfg.http_push is None:
        problems.append(
            f"devices[{indexed[0][0]}]: an http_push device needs an 'http_push' section"
            " (the listener it posts to)"
        )
    doors = [(i, d) for i, d in indexed if d.door is not None]
    if doors and cfg.privacy is None:
        problems.append(
            f"devices[{doors[0][0]}].door: door events need a 'privacy' section (the key that"
            " pseudonymises resident ids)"
        )
    problems += _records(cfg, [(i, d) for i, d in indexed if d.records is not None])
    owner = {d.id: f"devices[{i}]" for i, d in enumerate(cfg.devices)}
    for i, d in enumerate(cfg.devices):
        for door in getattr(d, "doors", []):  # the doors of broker terminals
            owner.setdefault(door.id, f"devices[{i}] (a door)")
    mapping = profiles_once(resolve_door_payload, list(cfg.profile_dirs))
    for i, d in indexed:
        where = f"devices[{i}]"
        for device in d.device_ids:
            clash = owner.get(device)
            if clash is not None and clash != where:
                problems.append(f"{where}: device {device!r} is also {clash}")
        if d.door is None:
            continue
        term = d.as_terminal()
        for door in term.doors:
            clash = owner.get(door.id)
            if clash is not None and clash != where:
                problems.append(f"{where}.door.doors: door {door.id!r} is also {clash}")
            owner.setdefault(door.id, where)
        try:
            problems += [f"{where}.door: {p}" for p in check_mapping(term, mapping(term))]
        except ConfigError as exc:
            problems += [f"{where}.door.profile: {e}" for e in exc.errors]
    return problems


def _records(cfg: Config, indexed: list[tuple[int, HttpPushDeviceConfig]]) -> list[str]:
    """Record terminals: kinds that are declared, and a privacy key for personal fields."""
    if not indexed:
        return []
    if cfg.records is None:
        return [f"devices[{indexed[0][0]}].records: terminal records need a 'records' section"
                " (the kinds and their fields)"]  # fmt: skip
    problems: list[str] = []
    declared = {k.id for k in cfg.records.kinds}
    for i, d in indexed:
        for kind in d.records or []:
            if kind not in declared:
                listing = ", ".join(sorted(declared))
                problems.append(f"devices[{i}].records: no record kind {kind!r} (kinds: {listing})")
    personal = any(f.data_class == "personal" for k in cfg.records.kinds for f in k.fields)
    if personal and cfg.privacy is None:
        problems.append("records: personal fields need a 'privacy' section (the key that"
                        " pseudonymises them)")  # fmt: skip
    return problems
