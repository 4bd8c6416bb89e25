"""A reload applies a good config through the component set and refuses anything else."""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.config.models import Config
from gateway.runtime.components import Changes
from gateway.runtime.reload import reload
from tests.support.daemon import gateway_config, write_config


class Applied:
    """The ``apply`` port: records each config it was asked to apply."""

    def __init__(self) -> None:
        self.configs: list[Config] = []

    async def __call__(self, cfg: Config) -> Changes:
        self.configs.append(cfg)
        return Changes(started=[], restarted=["driver:tcp"], stopped=[])


@pytest.fixture
def root_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    try:
        yield
    finally:
        root.setLevel(level)


def config(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    return {**gateway_config(tmp_path / "b.db", 1883, 5020, [1, 2]), **changes}


@pytest.mark.usefixtures("root_level")
async def test_a_good_config_is_applied_and_sets_the_log_level(tmp_path: Path) -> None:
    path = write_config(tmp_path / "gw.yaml", config(tmp_path))
    running = load_config(path)
    write_config(path, config(tmp_path, log_level="DEBUG"))
    applied = Applied()
    new = await reload(path, running, applied)
    assert new is not None
    assert applied.configs == [new]
    assert new.log_level == "DEBUG"
    assert logging.getLogger().level == logging.DEBUG


async def test_an_invalid_or_restart_only_change_is_refused_and_nothing_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(tmp_path / "gw.yaml", config(tmp_path))
    running = load_config(path)
    applied = Applied()
    write_config(path, config(tmp_path, log_level="LOUD"))
    assert await reload(path, running, applied) is None
    write_config(path, config(tmp_path, gateway={"site_id": "s2", "gateway_id": "gw1"}))
    assert await reload(path, running, applied) is None
    assert applied.configs == []
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2
    assert "gateway (the identity)" in refusals[1]
