"""The checks across devices scale: indexed, they report exactly what a pairwise scan does.

The reference functions below are the pairwise scans the checks used to be (quadratic in the
number of devices); random configs with many clashes must give the same lines in the same
order. A config of 20,000 buttons then validates in a small fraction of what it took.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.config.doors import DoorTerminalConfig, check_terminals
from gateway.config.loader import validate
from gateway.config.mqtt_devices import (
    FilterIndex,
    MqttButtonConfig,
    check_buttons,
    filters_overlap,
)
from gateway.core.errors import ConfigError

INLINE = {"event_id": "id", "state": "state", "active_values": ["pressed"]}


def _filter(rng: random.Random) -> str:
    levels = rng.randint(1, 4)
    return "/".join(rng.choice(["a", "b", "+"]) for _ in range(levels))


def test_the_index_finds_exactly_the_overlapping_filters() -> None:
    rng = random.Random(1)
    index = FilterIndex()
    added: list[tuple[str, int]] = []
    for owner in range(400):
        topic = _filter(rng)
        want = {o for t, o in added if filters_overlap(topic, t)}
        assert index.overlapping(topic) == want, topic
        index.add(topic, owner % 50)  # owners may have several filters
        added.append((topic, owner % 50))


def _pairwise_buttons(buttons: Sequence[MqttButtonConfig], names: Sequence[str]) -> list[str]:
    problems = []
    for j, b in enumerate(buttons):
        for i in range(j):
            a = buttons[i]
            if a.id == b.id:
                problems.append(f"{names[j]}.id: duplicate button id {b.id!r} (also {names[i]})")
            if filters_overlap(a.topic, b.topic):
                problems.append(
                    f"{names[j]}.topic: {b.topic!r} overlaps {names[i]} ({a.topic!r}):"
                    " a message must belong to one button"
                )
    return problems


def test_check_buttons_reports_what_the_pairwise_scan_did() -> None:
    rng = random.Random(2)
    buttons = [
        MqttButtonConfig.model_validate(
            {
                "kind": "mqtt_button",
                "id": f"b{rng.randrange(60)}",
                "topic": _filter(rng),
                "payload": INLINE,
            }
        )
        for _ in range(150)
    ]
    names = [f"devices[{2 * i}]" for i in range(len(buttons))]
    want = _pairwise_buttons(buttons, names)
    assert len(want) > 100  # the random config does clash, in every way
    assert check_buttons(buttons, names) == want


def _pairwise_terminals(terms: Sequence[DoorTerminalConfig]) -> list[str]:
    names = [f"terminals[{i}]" for i in range(len(terms))]
    problems: list[str] = []
    for j, b in enumerate(terms):
        for i in range(j):
            a = terms[i]
            if a.id == b.id:
                problems.append(f"{names[j]}.id: duplicate id {b.id!r} (also {names[i]})")
            for t in sorted(set(a.terminals) & set(b.terminals)):
                problems.append(f"{names[j]}: terminal {t!r} is also in {names[i]}")
            for d in sorted({d.id for d in a.doors} & {d.id for d in b.doors}):
                problems.append(f"{names[j]}.doors: door {d!r} is also in {names[i]}")
            for x in (b.topic, b.heartbeat_topic):
                if any(filters_overlap(x, y) for y in (a.topic, a.heartbeat_topic)):
                    problems.append(f"{names[j]}: topic {x!r} overlaps a topic of {names[i]}")
    return problems


def _terminal(rng: random.Random) -> DoorTerminalConfig:
    fleet = rng.random() < 0.5
    vendor = rng.choice(["fg", "qr", "hk"])
    doc: dict[str, Any] = {
        "kind": "door_terminal",
        "id": f"t{rng.randrange(40)}",
        "topic": f"{vendor}/{'+' if fleet else rng.choice(['x', 'y'])}/{rng.choice(['e', 'h'])}",
        "heartbeat_topic": f"{vendor}/{'+' if fleet else 'z'}/hb",
        "payload": {
            "event_id": "id",
            "kind": "k",
            "kind_values": [{"value": 1, "kind": "granted"}],
        },
        "doors": [{"id": f"d{rng.randrange(60)}", "ref": 1}],
    }
    if fleet:
        doc["device_from_topic"] = 1
        doc["doors"][0]["terminal"] = f"T{rng.randrange(30)}"
    return DoorTerminalConfig.model_validate(doc)


def test_check_terminals_reports_what_the_pairwise_scan_did() -> None:
    rng = random.Random(3)
    terms: list[DoorTerminalConfig] = []
    while len(terms) < 120:
        try:
            terms.append(_terminal(rng))
        except ValueError:  # a topic that overlaps its own heartbeat topic: drawn again
            continue
    want = _pairwise_terminals(terms)
    assert len(want) > 100
    assert check_terminals(terms) == want


def _config(tmp_path: Path, devices: list[dict[str, Any]]) -> dict[str, Any]:
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    secret.chmod(0o600)
    return {
        "gateway": {"site_id": "s1", "gateway_id": "g1"},
        "store": {"path": str(tmp_path / "store.db")},
        "upstream": {
            "mqtt": {"host": "broker.example", "username": "gw", "password_file": str(secret)}
        },
        "local_broker": {"host": "127.0.0.1"},
        "devices": devices,
    }


def test_twenty_thousand_buttons_validate_in_seconds(tmp_path: Path) -> None:
    buttons: list[dict[str, Any]] = [
        {"kind": "mqtt_button", "id": f"b{i}", "topic": f"acme/btn-{i}/event"}
        | ({"profile": "sos-state-json"} if i % 2 else {"payload": INLINE})
        for i in range(20_000)
    ]
    fleet = {"kind": "mqtt_button", "id": "fleet", "topic": "vendor/+/sos", "payload": INLINE}
    started = time.perf_counter()
    validate(_config(tmp_path, [*buttons, fleet]), tmp_path)
    took = time.perf_counter() - started
    assert took < 15, f"20,000 buttons took {took:.1f} s"  # a smoke bound; ~0.5 s here
    clash = fleet | {"id": "late", "topic": "acme/+/event"}
    with pytest.raises(ConfigError) as caught:
        validate(_config(tmp_path, [*buttons, clash]), tmp_path)
    assert len(caught.value.errors) == 20_000  # the one filter overlaps every exact topic


def test_an_unknown_profile_is_reported_for_each_button_that_names_it(tmp_path: Path) -> None:
    buttons = [
        {"kind": "mqtt_button", "id": f"b{i}", "topic": f"acme/{i}/e", "profile": "nope"}
        for i in range(3)
    ]
    with pytest.raises(ConfigError) as caught:
        validate(_config(tmp_path, buttons), tmp_path)
    assert [e.split(" (searched")[0] for e in caught.value.errors] == [
        f"devices[{i}] (b{i}).profile: b{i}.profile: unknown profile 'nope'" for i in range(3)
    ]
