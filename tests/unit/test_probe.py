"""Profile probes: the model and its checks, and guessing a profile from what a unit answered."""

from pathlib import Path

import pytest

from drivers.modbus import probe
from drivers.modbus.codec import encode
from gateway.config.loader import BUILTIN_PROFILES, load_profile, modbus_profiles
from gateway.config.modbus import ProfileConfig
from gateway.core.errors import ConfigError

SHIPPED = {p.name: p for p in modbus_profiles([BUILTIN_PROFILES])}


def answers(
    holding: dict[int, int] | None = None, inputs: dict[int, float] | None = None
) -> probe.Answers:
    """What a unit answers to every probe read of the shipped profiles: the holding registers
    it has, input float32 values (low word first) it has; everything else refused."""
    holding = holding or {}
    env = SHIPPED["env-station-rs485"]
    floats = {p.address: p for p in env.points}
    out: dict[probe.Read, list[int] | None] = {}
    for table, address, count in probe.reads(SHIPPED.values()):
        if table == "holding":
            regs = [holding.get(a) for a in range(address, address + count)]
            out[(table, address, count)] = None if None in regs else [r or 0 for r in regs]
        elif inputs is not None and address in inputs:
            out[(table, address, count)] = encode(floats[address], inputs[address])
        else:
            out[(table, address, count)] = None
    return out


def ranked(got: probe.Answers, unit: int = 1) -> list[str]:
    return [g.profile for g in probe.rank(probe.guess(p, unit, got) for p in SHIPPED.values())]


def test_every_shipped_modbus_profile_has_a_probe() -> None:
    assert set(SHIPPED) == {p.stem for p in BUILTIN_PROFILES.glob("*.yaml")}
    assert all(p.probe for p in SHIPPED.values())


def test_each_shipped_sensor_is_guessed_as_itself() -> None:
    # humidity 55.0 %RH, 22.0 degC: PM10 "below" PM2.5 rules the dust sensor out
    assert ranked(answers({0: 550, 1: 220})) == ["th-rs485", "noise-rs485"]
    # 35 and 65 ug/m3: only the dust sensor's relation adds to its score
    assert ranked(answers({0: 35, 1: 65}))[0] == "pm-laser-rs485"
    # one register of 54.0 dB(A): the others' second register is refused
    assert ranked(answers({0: 540})) == ["noise-rs485", "pm-laser-rs485", "th-rs485"]
    station = answers(inputs={0: 22.0, 2: 55.0, 12: 101.3})
    assert ranked(station) == ["env-station-rs485"]


def test_ranges_cannot_tell_every_pair_apart_as_docs_profiles_says() -> None:
    # 20.0 %RH at 25.0 degC reads as 200 and 250 ug/m3, PM10 above PM2.5: the dust sensor fits
    assert ranked(answers({0: 200, 1: 250}))[:2] == ["pm-laser-rs485", "th-rs485"]


def test_an_implausible_value_rules_a_profile_out_and_nothing_fitting_is_unknown() -> None:
    assert "noise-rs485" not in ranked(answers({0: 250, 1: 220}))  # 25.0 dB(A) is below 30
    assert ranked(answers({0: 0xFFFF})) == []  # 6553.5 %RH, 65535 ug/m3, 6553.5 dB(A)
    assert ranked(answers(inputs={0: 22.0, 2: 55.0, 12: 30.0})) == []  # no one lives at 30 kPa


def test_an_equals_check_outweighs_plausible_ranges(tmp_path: Path) -> None:
    site = tmp_path / "co2-ndir-rs485.yaml"
    site.write_text(
        "name: co2-ndir-rs485\n"
        "points:\n  - {name: co2, address: 0, unit: ppm, range: [0, 5000]}\n"
        "probe:\n"
        "  - point: co2\n"
        "  - raw: {table: holding, address: 2000}\n"
        "    equals: unit\n"
        "  - raw: {table: holding, address: 2002}\n"
        "    equals: 4242\n"
    )
    (co2,) = modbus_profiles([tmp_path])
    unit7 = {("holding", 0, 1): [550], ("holding", 2000, 1): [7], ("holding", 2002, 1): [4242]}
    (got,) = probe.rank([probe.guess(co2, 7, unit7)])
    assert (got.score, got.matched, got.checks, got.unanswered) == (7, 3, 3, 0)
    assert probe.guess(co2, 8, unit7) is None  # the id register names another unit
    best = probe.rank(probe.guess(p, 7, {**answers({0: 550, 1: 220}), **unit7})
                      for p in [*SHIPPED.values(), co2])  # fmt: skip
    assert best[0].profile == "co2-ndir-rs485"


@pytest.mark.parametrize(
    ("probe_yaml", "error"),
    [
        ("  - point: nope\n", "probe[0].point: the profile has no point 'nope'"),
        ("  - {point: a, raw: {address: 3}, equals: 1}\n", "either a 'point' or a 'raw'"),
        ("  - raw: {address: 3}\n", "a 'raw' check needs a 'range' or an 'equals'"),
        ("  - {point: a, range: [0, 1], equals: 1}\n", "a 'range' or an 'equals', not both"),
        ("  - {point: a, at_least: b}\n", "'b' is not a point this probe reads"),
        ("  - {raw: {table: coil, address: 1}, equals: 1}\n", "does not fit table 'coil'"),
        ("  - point: a\n  - point: a\n", "a point is checked twice"),
        ("  - {point: a, match: 1}\n", "probe[0].match: unknown key"),
    ],
)
def test_a_bad_probe_is_refused_with_the_reason(
    tmp_path: Path, probe_yaml: str, error: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\npoints:\n  - {name: a, address: 0}\n  - {name: b, address: 1}\nprobe:\n"
        + probe_yaml
    )
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert any(error in e for e in caught.value.errors), caught.value.errors
    assert modbus_profiles([tmp_path]) == []  # a profile that does not load is no candidate


def test_the_first_profile_of_a_name_wins_as_for_devices(tmp_path: Path) -> None:
    (tmp_path / "th-rs485.yaml").write_text("name: th-rs485\npoints:\n  - {name: x, address: 9}\n")
    found = {p.name: p for p in modbus_profiles([tmp_path, BUILTIN_PROFILES])}
    assert [p.name for p in found["th-rs485"].points] == ["x"]
    assert found["th-rs485"].probe is None
    assert isinstance(found["noise-rs485"], ProfileConfig)
