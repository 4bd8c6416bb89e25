"""GPIO config models: defaults, and every bad value refused with a message that says why."""

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gateway.config.gpio import GpioDeviceConfig, GpioInputConfig, GpioOutputConfig


def gpio(**changes: Any) -> dict[str, Any]:
    """A good device: two inputs and two outputs; ``changes`` replace top-level keys."""
    doc: dict[str, Any] = {
        "kind": "gpio",
        "id": "panel",
        "inputs": [
            {"name": "call_101", "pin": 17},
            {"name": "fire", "pin": 22, "contact": "nc", "debounce": 0.2},
        ],
        "outputs": [
            {"name": "siren", "pin": 5, "kind": "siren"},
            {"name": "relay", "pin": 13, "kind": "led", "active_high": False},
        ],
    }
    doc.update(changes)
    return doc


def refused(doc: dict[str, Any]) -> str:
    """The validation message of a config that must be refused (exactly one error)."""
    with pytest.raises(ValidationError) as err:
        GpioDeviceConfig.model_validate(doc)
    assert err.value.error_count() == 1, err.value
    return str(err.value)


def test_good_config_and_defaults() -> None:
    cfg = GpioDeviceConfig.model_validate(gpio())
    call, fire = cfg.inputs
    assert (call.pull, call.closed_level, call.contact, call.role) == ("up", "low", "no", "alarm")
    assert (call.debounce, call.hold) == (0.05, None)
    assert fire.contact == "nc"
    assert cfg.pin_factory == "auto"
    assert [o.active_high for o in cfg.outputs] == [True, False]


def test_closed_level_follows_the_pull() -> None:
    assert GpioInputConfig(name="a", pin=17, pull="down").closed_level == "high"
    assert GpioInputConfig(name="a", pin=17, pull="none", active_level="high").closed_level == (
        "high"
    )


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (
            [{"name": "a", "pin": 17}, {"name": "b", "pin": 17}],
            [],
            "GPIO17 is used by both 'a' and 'b'",
        ),
        (
            [{"name": "a", "pin": 17}],
            [{"name": "s", "pin": 17, "kind": "siren"}],
            "GPIO17 is used by both 'a' and 's'",
        ),
        (
            [{"name": "a", "pin": 17}],
            [{"name": "a", "pin": 18, "kind": "led"}],
            "name 'a' is used twice",
        ),
        ([], [], "at least one input or output"),
    ],
)
def test_names_and_pins_are_unique(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], message: str
) -> None:
    assert message in refused(gpio(inputs=inputs, outputs=outputs))


@pytest.mark.parametrize("pin", [-1, 28, 40, "GPIO17", 17.5])
def test_bad_pin_numbers(pin: object) -> None:
    assert "inputs.0.pin" in refused(gpio(inputs=[{"name": "a", "pin": pin}], outputs=[]))
    output = {"name": "s", "pin": pin, "kind": "siren"}
    assert "outputs.0.pin" in refused(gpio(inputs=[], outputs=[output]))


@pytest.mark.parametrize(
    "where",
    [
        lambda d: d.update(colour="red"),
        lambda d: d["inputs"][0].update(bounce_time=0.1),
        lambda d: d["outputs"][0].update(frequency=440),
    ],
)
def test_unknown_keys_are_refused(where: Any) -> None:
    doc = gpio()
    where(doc)
    assert "Extra inputs are not permitted" in refused(doc)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"pull": "none"}, "set active_level"),
        ({"pull": "up", "active_level": "high"}, "reads 'low' when closed"),
        ({"pull": "down", "active_level": "low"}, "reads 'high' when closed"),
        ({"pin": 2, "pull": "down"}, "GPIO2 has a fixed pull-up"),
        ({"pin": 3, "pull": "none", "active_level": "low"}, "GPIO3 has a fixed pull-up"),
        ({"hold": 0.05}, "hold (0.05 s) must be longer than debounce"),
        ({"debounce": 1.5}, "less than or equal to 1"),
        ({"debounce": -0.1}, "greater than or equal to 0"),
        ({"hold": 0}, "greater than 0"),
        ({"contact": "nope"}, "'no' or 'nc'"),
        ({"role": "panic"}, "'alarm', 'ack' or 'reset'"),
        ({"pull": "sideways"}, "'up', 'down' or 'none'"),
        ({"name": "has space"}, "String should match pattern"),
    ],
)
def test_bad_inputs(line: dict[str, Any], message: str) -> None:
    doc = gpio(inputs=[{"name": "a", "pin": 17, **line}], outputs=[])
    assert message in refused(doc)


def test_pulled_up_input_on_gpio2_is_fine() -> None:
    cfg = GpioDeviceConfig.model_validate(gpio(inputs=[{"name": "a", "pin": 2}], outputs=[]))
    assert cfg.inputs[0].pin == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"pin": 5, "kind": "horn"}, "'siren', 'strobe' or 'led'"),
        ({"pin": 3, "kind": "siren"}, "GPIO3 has a fixed pull-up"),
        ({"pin": 5}, "outputs.0.kind\n  Field required"),
        ({"kind": "led"}, "outputs.0.pin\n  Field required"),
    ],
)
def test_bad_outputs(line: dict[str, Any], message: str) -> None:
    assert message in refused(gpio(inputs=[], outputs=[{"name": "s", **line}]))


def test_active_low_output_on_gpio3_is_fine() -> None:
    output = {"name": "s", "pin": 3, "kind": "led", "active_high": False}
    cfg = GpioDeviceConfig.model_validate(gpio(inputs=[], outputs=[output]))
    assert cfg.outputs[0].pin == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [({"kind": "modbus"}, "Input should be 'gpio'"), ({"pin_factory": "lgpio"}, "'auto' or")],
)
def test_bad_device_fields(change: dict[str, Any], message: str) -> None:
    assert message in refused(gpio(**change))


@pytest.mark.parametrize("model", [GpioDeviceConfig, GpioInputConfig, GpioOutputConfig])
def test_every_field_is_described(model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        assert info.description, f"{model.__name__}.{name} has no description"
