"""The command service: execute once, answer duplicates, reject and audit, report interrupted."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.commands.legacy import sign_legacy
from gateway.commands.replay import ReplayCache
from gateway.commands.service import ActionFailed, CommandService
from gateway.commands.signing import (
    b64url,
    b64url_decode,
    keygen,
    load_private_key,
    make_command,
    sign,
)
from gateway.config.commands import CommandsConfig
from gateway.core.clock import SystemClock
from gateway.core.messages import Lane, Record


class Actions:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def acknowledge(self, alarm_id: str, by: str) -> dict[str, Any]:
        self.calls.append(("ack", (alarm_id, by)))
        if alarm_id != "a1":
            raise ActionFailed(f"no open alarm {alarm_id!r}")
        return {"alarm_id": alarm_id, "changed": True}

    async def reset(self, alarm_id: str, by: str) -> dict[str, Any]:
        self.calls.append(("reset", (alarm_id, by)))
        return {"alarm_id": alarm_id, "changed": True}

    async def unlock(self, door: str, seconds: int, why: str) -> dict[str, Any]:
        self.calls.append(("unlock", (door, seconds)))
        return {"door": door, "seconds": seconds}

    async def silence(self) -> dict[str, Any]:
        self.calls.append(("silence", None))
        return {"silenced": 0}

    async def status(self) -> dict[str, Any]:
        return {"status": "ok"}

    async def away(
        self, household: str, start: float, end: float, note: str, by: str
    ) -> dict[str, Any]:
        self.calls.append(("away", (household, start, end, note, by)))
        return {"absence": 1}


class Harness:
    def __init__(
        self, tmp: Path, synced: bool = True, audit_rate: int = 60, accept_legacy: bool = True
    ) -> None:
        files = keygen(tmp / "keys")
        self.key = load_private_key(files.private)
        self.cfg = CommandsConfig(
            public_keys=[files.public], audit_rate=audit_rate, accept_legacy=accept_legacy
        )
        self.records: list[Record] = []
        self.actions = Actions()
        self.synced = synced
        self.store_path = tmp / "buf.db"
        self.service = self.new_service()
        self.changed = asyncio.Event()

    def new_service(self) -> CommandService:
        def add(rec: Record) -> None:
            self.records.append(rec)
            self.changed.set()

        return CommandService(
            self.cfg,
            self.store_path,
            "s1",
            "gw1",
            add,
            SystemClock(),
            lambda: self.synced,
            self.actions,
        )

    def command(self, name: str, args: dict[str, Any], **kw: Any) -> tuple[str, bytes]:
        doc = make_command(name, args, site_id="s1", gateway_id="gw1", now=time.time(), **kw)
        return name, sign(self.key, doc).encode()

    def legacy(self, name: str, args: dict[str, Any], **kw: Any) -> tuple[str, bytes]:
        doc = make_command(name, args, site_id="s1", gateway_id="gw1", now=time.time(), **kw)
        return name, json.dumps(sign_legacy(self.key, doc)).encode()

    def bodies(self, topic_prefix: str) -> list[dict[str, Any]]:
        return [dict(r.fields) for r in self.records if r.topic.startswith(topic_prefix)]

    async def until(self, n: int, topic_prefix: str = "audit") -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            while len(self.bodies(topic_prefix)) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.bodies(topic_prefix)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    task = asyncio.create_task(harness.service.run())
    try:
        yield harness
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_command_delivered_twice_runs_once_and_is_answered_twice(h: Harness) -> None:
    name, raw = h.command("unlock", {"door": "gate-1", "seconds": 5}, command_id="c-1")
    h.service.submit(name, raw)
    h.service.submit(name, raw)  # MQTT QoS 1 duplicate
    audits = await h.until(2)
    assert h.actions.calls == [("unlock", ("gate-1", 5))]
    assert [a["outcome"] for a in audits] == ["executed", "duplicate"]
    results = h.bodies("cmd-result/c-1")
    assert results[0] == results[1]
    assert results[0]["status"] == "executed"
    assert all(r.lane is Lane.EVENT for r in h.records)


async def test_a_failed_action_is_answered_with_its_reason(h: Harness) -> None:
    h.service.submit(*h.command("ack", {"alarm_id": "zz", "by": "ops"}, command_id="c-2"))
    await h.until(1)
    (result,) = h.bodies("cmd-result/c-2")
    assert result["status"] == "failed"
    assert "no open alarm 'zz'" in result["detail"]
    assert h.actions.calls == [("ack", ("zz", "platform:ops"))]


async def test_forged_replayed_and_wrong_target_commands_are_rejected(h: Harness) -> None:
    name, raw = h.command("silence", {}, command_id="c-3")
    head, body, sig = raw.split(b".")
    doc = json.loads(b64url_decode(body.decode()))
    forged_body = json.dumps({**doc, "nonce": doc["nonce"][::-1]}).encode()
    forged = b".".join((head, b64url(forged_body).encode(), sig))
    h.service.submit(name, forged)  # signature no longer matches
    h.service.submit(name, raw)  # the genuine one: executed
    replay = h.command("silence", {}, command_id="c-4", nonce=doc["nonce"])  # old nonce
    h.service.submit(*replay)
    other = make_command("silence", {}, site_id="s1", gateway_id="gw2", now=time.time())
    h.service.submit("silence", sign(h.key, other).encode())
    audits = await h.until(4)
    assert [(a["outcome"], a["detail"].split(":")[0]) for a in audits] == [
        ("rejected", "bad_signature"),
        ("executed", ""),
        ("rejected", "replayed"),
        ("rejected", "wrong_target"),
    ]
    assert h.actions.calls == [("silence", None)]
    assert h.service.rejected == {"bad_signature": 1, "replayed": 1, "wrong_target": 1}
    assert {a["form"] for a in audits} == {"jws"}
    assert h.service.received == {"jws": 4}


async def test_the_legacy_envelope_is_executed_during_the_transition_and_audited_as_such(
    h: Harness,
) -> None:
    h.service.submit(*h.legacy("unlock", {"door": "gate-1", "seconds": 5}, command_id="c-8"))
    h.service.submit(*h.command("silence", {}, command_id="c-9"))
    audits = await h.until(2)
    assert [(a["outcome"], a["form"]) for a in audits] == [
        ("executed", "legacy"),
        ("executed", "jws"),
    ]
    assert h.actions.calls == [("unlock", ("gate-1", 5)), ("silence", None)]
    assert h.service.received == {"legacy": 1, "jws": 1}


async def test_the_legacy_envelope_is_refused_once_the_transition_is_over(tmp_path: Path) -> None:
    h = Harness(tmp_path, accept_legacy=False)
    task = asyncio.create_task(h.service.run())
    try:
        h.service.submit(*h.legacy("unlock", {"door": "gate-1", "seconds": 5}, command_id="c-10"))
        (audit,) = await h.until(1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (audit["outcome"], audit["form"], audit["authenticated"]) == (
        "rejected",
        "legacy",
        False,
    )
    assert "accept_legacy" in audit["detail"]
    assert h.actions.calls == []


async def test_commands_are_refused_while_the_clock_is_not_synchronised(tmp_path: Path) -> None:
    h = Harness(tmp_path, synced=False)
    task = asyncio.create_task(h.service.run())
    try:
        h.service.submit(*h.command("silence", {}, command_id="c-5"))
        (audit,) = await h.until(1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert audit["outcome"] == "rejected"
    assert audit["detail"].startswith("clock_unsynced")
    assert h.actions.calls == []


async def test_a_flood_of_forgeries_is_counted_but_audited_at_the_rate_limit(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, audit_rate=3)
    task = asyncio.create_task(h.service.run())
    try:
        for _ in range(10):
            h.service.submit("unlock", b"{not json")
        h.service.submit(*h.command("status", {}, command_id="c-6"))
        await h.until(1, "cmd-result/c-6")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert h.service.rejected["not_json"] == 10
    assert h.service.unaudited == 7
    assert len([a for a in h.bodies("audit") if a["outcome"] == "rejected"]) == 3


async def test_a_command_interrupted_by_a_crash_is_reported_never_rerun(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    name, raw = h.command("unlock", {"door": "gate-1", "seconds": 5}, command_id="c-7")
    cmd = h.service.verifier.verify(raw, time.time(), topic_name=name)
    with ReplayCache.open(h.service.cache_path, now=time.time()) as cache:
        assert cache.claim(cmd)  # claimed, then the process died before finishing
    task = asyncio.create_task(h.service.run())
    try:
        (result,) = await h.until(1, "cmd-result/c-7")
        h.service.submit(name, raw)  # the platform sends it again
        await h.until(2, "cmd-result/c-7")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert result["status"] == "interrupted"
    assert h.bodies("audit")[0]["outcome"] == "interrupted"
    assert h.actions.calls == []


async def test_a_planned_absence_from_the_platform_names_who_asked(h: Harness) -> None:
    args = {"household": "b7-0304", "start": 1_800_000_000, "end": 1_800_086_400,
            "note": "visiting family", "by": "office-li"}  # fmt: skip
    h.service.submit(*h.command("away", args, command_id="c-away"))
    (audit,) = await h.until(1)
    assert h.actions.calls == [
        ("away", ("b7-0304", 1_800_000_000, 1_800_086_400, "visiting family", "platform:office-li"))
    ]
    assert audit["outcome"] == "executed"
    (result,) = h.bodies("cmd-result/c-away")
    assert result["status"] == "executed"
