"""The shipped payload schemas are the consumers': they accept fields a later version adds."""

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from gateway.cli.main import main
from tests.support.daemon import REPO
from tests.support.schemas import SCHEMA_FILES, consumer_schema, validator


def test_shipped_schemas_accept_fields_a_later_minor_version_adds() -> None:
    status = {"v": 1, "gateway_id": "g", "site_id": "s", "state": "online",
              "ts": "2027-01-15T08:00:00.000Z"}  # fmt: skip
    newer = status | {"uptime_s": 12}
    Draft202012Validator(consumer_schema("status.json")).validate(newer)
    validator("status.json").validate(status)
    with pytest.raises(ValidationError, match="uptime_s"):
        validator("status.json").validate(newer)  # the gateway's own tests stay strict
    for name in SCHEMA_FILES:
        assert '"additionalProperties": false' not in json.dumps(consumer_schema(name))


def test_cgw_schema_prints_a_payload_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "telemetry"]) == 0
    assert json.loads(capsys.readouterr().out) == consumer_schema("telemetry.json")
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Config"
    assert main(["schema", "telemetri"]) == 2
    assert "unknown schema 'telemetri' (known: config, access-event" in capsys.readouterr().err


def examples(marker: str) -> list[dict[str, Any]]:
    """The JSON examples of docs/mqtt-api.md that contain ``marker``."""
    page = (REPO / "docs" / "mqtt-api.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", page, re.DOTALL)
    return [json.loads(b) for b in blocks if marker in b]


def test_the_report_examples_of_the_contract_page_match_their_schemas() -> None:
    reports = examples('"day":')
    assert len(reports) == 2
    for example in reports:
        name = "report-availability.json" if "devices" in example else "report-response.json"
        validator(name).validate(example)


def test_the_publish_refused_example_of_the_contract_page_matches_its_schema() -> None:
    [example] = examples('"refused_seq":')
    validator("publish-refused.json").validate(example)
