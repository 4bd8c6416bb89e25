"""A new device kind needs its package, its config model and one registry line: nothing else.

The toy kind lives in a package written to a temporary folder; the daemon runs it through the
same pollers, pipeline and device states as every shipped kind.
"""

import asyncio
import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from drivers import registry
from gateway.config import validate
from gateway.runtime.root import Runtime
from tests.support.ports import free_port

TOY = '''
"""A toy kind: one polled thermometer that always reads the configured value."""

import functools
from typing import Literal

from pydantic import BaseModel

from drivers.base import DriverGroup, GroupPlan, PollSchedule, Ports, config_key
from gateway.core.messages import Quality, Reading, Sample


class ToyConfig(BaseModel):
    kind: Literal["toy"] = "toy"
    id: str
    value: float


class Thermometer:
    def __init__(self, cfg: ToyConfig, ports: Ports) -> None:
        self.id = cfg.id
        self.cfg = cfg
        self.ports = ports
        self.disabled: dict[str, str] = {}

    async def poll(self) -> Sample:
        reading = Reading("temperature", self.cfg.value, "degC", Quality.GOOD)
        return Sample(self.id, self.ports.clock.wall(), (reading,))


def _group(cfg: ToyConfig, ports: Ports) -> DriverGroup:
    return DriverGroup(polled=[(Thermometer(cfg, ports), PollSchedule(0.05, 3, 1.0))])


def plan(cfg, ports):
    return [
        GroupPlan(f"toy:{d.id}", config_key(d.model_dump()), functools.partial(_group, d, ports))
        for d in cfg.devices
        if d.kind == "toy"
    ]
'''


async def test_a_toy_kind_runs_through_the_pipeline_into_device_states_and_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "toykind").mkdir()
    (tmp_path / "toykind" / "__init__.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toykind", raising=False)
    toykind = importlib.import_module("toykind")  # written above

    monkeypatch.setitem(registry.KINDS, "toy", toykind.plan)  # the one registry line
    base = validate(
        {
            "gateway": {"site_id": "s1", "gateway_id": "gw1"},
            "store": {"path": str(tmp_path / "buf.db")},
            "upstream": {"mqtt": {"host": "127.0.0.1", "port": free_port(), "reconnect_max": 1}},
            "devices": [],
        },
        tmp_path,
    )
    cfg = base.model_copy(update={"devices": [toykind.ToyConfig(id="toy-1", value=21.5)]})
    runtime = Runtime(cfg)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        version = 0
        async with asyncio.timeout(10):
            while "toy-1" not in runtime.devices.snapshot() or (
                "temperature" not in runtime.devices.snapshot()["toy-1"].points
            ):
                version = await runtime.devices.changed(version)
        state = runtime.devices.snapshot()["toy-1"]
        assert state.points["temperature"].value == 21.5
        assert state.online is True
        assert state.kind == "toy"
        assert state.counters["polls"] >= 1
        assert runtime.store is not None
        await runtime.store.flush()
        assert runtime.store.backlog("mqtt") >= 2  # its telemetry and its status, queued
        stop.set()
    sys.modules.pop("toykind", None)
