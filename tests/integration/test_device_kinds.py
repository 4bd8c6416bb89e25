"""A new device kind is its package, its config model and four lines: docs/architecture.md.

The page's "Adding a device kind" section holds a toy kind: its new files (``python`` blocks
headed by their path), its edits to existing files (``diff`` blocks) and a config naming it
(a ``yaml`` block). The recipe test copies ``gateway/`` and ``drivers/`` into a temporary
folder, writes and applies exactly those blocks, and runs ruff, the import contracts, mypy,
``cgw check-config`` and the daemon on the copy in child processes. When the page and the
code drift apart (an anchor line renamed, a type moved, one more place a kind must touch), it
fails.
"""

import asyncio
import json
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers import registry
from gateway.config import validate
from gateway.config.models import DeviceConfig
from gateway.core.errors import ConfigError
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
SECTION = "## Adding a device kind"
BIN = Path(sys.executable).parent


def recipe() -> str:
    """The page's "Adding a device kind" section."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : None if end < 0 else end]


def blocks(lang: str) -> list[tuple[str, str]]:
    """Each ``lang`` block of the recipe as (what its first line names, the rest)."""
    out = []
    for body in re.findall(rf"^```{lang}\n(.*?)^```$", recipe(), re.S | re.M):
        first, rest = body.split("\n", 1)
        assert first.startswith("# "), f"a {lang} block must open with '# <path>': {first!r}"
        out.append((first[2:].strip(), rest))
    return out


def apply_diff(text: str, diff: str) -> str:
    """``text`` with a recipe edit applied.

    `` line`` must be found further down (it moves the cursor there), ``-line`` must be the
    next line (it is removed), ``+line`` is inserted after the cursor; ``...`` is a reading
    aid. Raises ``ValueError`` when a line the edit expects is not there.
    """
    lines = text.split("\n")
    at = -1
    for edit in diff.rstrip("\n").split("\n"):
        mark, line = edit[:1], edit[1:]
        if edit.strip() == "...":
            continue
        if mark == " ":
            try:
                at = lines.index(line, at + 1)
            except ValueError:
                raise ValueError(f"no line {line!r} after line {at + 1}") from None
        elif mark == "-":
            if at + 1 >= len(lines) or lines[at + 1] != line:
                raise ValueError(f"line {at + 2} is not {line!r}")
            del lines[at + 1]
        elif mark == "+":
            at += 1
            lines.insert(at, line)
        else:
            raise ValueError(f"an edit line starts with ' ', '-' or '+': {edit!r}")
    return "\n".join(lines)


def test_an_edit_whose_anchor_is_gone_is_refused() -> None:
    text = "a\nb\nc"
    assert apply_diff(text, " a\n+x\n ...\n b\n-c\n+y\n") == "a\nx\nb\ny"
    with pytest.raises(ValueError, match="no line 'z'"):
        apply_diff(text, " z\n+x\n")
    with pytest.raises(ValueError, match="is not 'c'"):
        apply_diff(text, " a\n-c\n")


def test_every_kind_the_config_admits_has_one_registry_line() -> None:
    models = typing.get_args(typing.get_args(DeviceConfig)[0])
    kinds = {k for m in models for k in typing.get_args(m.model_fields["kind"].annotation)}
    assert kinds == set(registry.KINDS)
    for kind, factory in registry.KINDS.items():
        assert factory.__name__ == "plan", kind
        assert factory.__module__.startswith("drivers."), kind
        assert factory.__module__.endswith(".kind"), kind


def test_the_shipped_tree_does_not_know_the_toy_kind(tmp_path: Path) -> None:
    """What the union edit is for: without it the loader refuses ``kind: toy``."""
    raw = _config(tmp_path)
    with pytest.raises(ConfigError, match="toy"):
        validate(raw, tmp_path)


CHILD = """
import asyncio, json, sys
from pathlib import Path

import gateway
from gateway.config import load_config
from gateway.runtime.root import Runtime


async def main() -> dict:
    runtime = Runtime(load_config(Path(sys.argv[1])))
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(runtime.run(stop))
        await runtime.ready.wait()
        version = 0
        while "temperature" not in runtime.devices.snapshot()["toy-1"].points:
            version = await runtime.devices.changed(version)
        state = runtime.devices.snapshot()["toy-1"]
        await runtime.store.flush()
        out = {
            "gateway": gateway.__file__,
            "kind": state.kind,
            "online": state.online,
            "value": state.points["temperature"].value,
            "polls": state.counters.get("polls", 0),
            "backlog": runtime.store.backlog("mqtt"),
        }
        stop.set()
    return out


print(json.dumps(asyncio.run(asyncio.wait_for(main(), 30))))
"""


async def test_the_recipe_adds_a_toy_kind_that_runs_through_pipeline_states_and_store(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("gateway", "drivers"):
        shutil.copytree(ROOT / package, tree / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tree)

    new = blocks("python")
    assert {path for path, _ in new} >= {"drivers/toy/kind.py", "gateway/config/toy.py"}
    for path, body in new:
        assert not (tree / path).exists(), f"{path} is a new file"
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(body, encoding="utf-8")
    edits = blocks("diff")
    assert [path for path, _ in edits] == ["drivers/registry.py", "gateway/config/models.py"]
    for path, diff in edits:
        target = tree / path
        target.write_text(apply_diff(target.read_text(encoding="utf-8"), diff), encoding="utf-8")
    touched = [path for path, _ in new + edits]
    added = sum(line.startswith("+") for _, diff in edits for line in diff.split("\n"))
    assert added == 4, "the page promises four lines in existing files"

    env = {"PYTHONPATH": str(tree), "PATH": str(BIN)}
    cache = str(tmp_path / "mypy")
    for argv in (
        [str(BIN / "ruff"), "check", *touched],
        [str(BIN / "ruff"), "format", "--check", *touched],
        [str(BIN / "lint-imports"), "--no-logo", "--no-cache"],  # the layer contracts
        [sys.executable, "-m", "mypy", "--cache-dir", cache, *touched],  # strict, as configured
    ):
        done = await _run(tree, env, *argv)
        assert done.returncode == 0, done.stdout + done.stderr

    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(_config(tmp_path)), encoding="utf-8")
    check = await _run(tmp_path, env, sys.executable, "-m", "gateway", "check-config", str(cfg))
    assert check.returncode == 0, check.stderr

    script = tmp_path / "run_toy.py"
    script.write_text(CHILD, encoding="utf-8")
    run = await _run(tmp_path, env, sys.executable, str(script), str(cfg))
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.splitlines()[-1])
    assert Path(got["gateway"]).is_relative_to(tree)  # the copy ran, not the checkout
    assert got["kind"] == "toy"
    assert got["online"] is True
    assert got["value"] == 21.5
    assert got["polls"] >= 1
    assert got["backlog"] >= 2  # its telemetry and its status, queued for the platform


def _config(tmp_path: Path) -> dict[str, Any]:
    """A gateway with the page's ``yaml`` devices, polled fast, and an uplink nobody serves."""
    ((_, text),) = blocks("yaml")
    devices = [{**d, "interval": 0.05} for d in yaml.safe_load(text)["devices"]]
    return {
        "gateway": {"site_id": "s1", "gateway_id": "gw1"},
        "store": {"path": str(tmp_path / "buf.db")},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": free_port(), "reconnect_max": 1}},
        "devices": devices,
    }


async def _run(
    cwd: Path, env: dict[str, str] | None, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` (with only ``env``, when given) and collect what it printed."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())
