"""The replay cache on real SQLite files: claims, outcomes, restarts, pruning, corruption."""

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.model import Command, NoArgs, UnlockArgs
from gateway.commands.rejected import Rejected
from gateway.commands.replay import ReplayCache
from gateway.commands.signing import make_command, sign
from gateway.commands.verify import Verifier
from gateway.config.keys import key_id
from gateway.core.errors import StoreError

T0 = 1_800_000_000  # wall clock of the tests
SKEW, LIFETIME = 60, 60


def cmd(
    n: int = 1, exp: int = T0 + 60, nonce: str | None = None, cid: str | None = None
) -> Command:
    return Command(
        id=cid or f"cmd-{n}",
        name="unlock",
        site_id="huayuan-b7",
        gateway_id="gw-01",
        args=UnlockArgs(door="gate-1", seconds=5),
        iat=exp - 60,
        exp=exp,
        nonce=nonce or f"nonce-{n:016d}",
        kid="84fab1a6a2a69ca0",
    )


def open_cache(path: Path, now: float = T0) -> ReplayCache:
    return ReplayCache.open(path, now=now, max_skew=SKEW, max_lifetime=LIFETIME)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ReplayCache]:
    c = open_cache(tmp_path / "replay.db")
    try:
        yield c
    finally:
        c.close()


# -- claims -------------------------------------------------------------------------------------


def test_a_nonce_is_claimed_once(cache: ReplayCache) -> None:
    assert cache.claim(cmd(1))
    assert not cache.claim(cmd(1))
    assert cache.claim(cmd(2))
    assert cache.size() == 2


def test_same_nonce_under_another_id_is_a_replay(cache: ReplayCache) -> None:
    assert cache.claim(cmd(1, nonce="n" * 16))
    assert not cache.claim(cmd(2, nonce="n" * 16))
    assert cache.entry("cmd-2") is None


def test_same_id_with_another_nonce_is_refused(cache: ReplayCache) -> None:
    assert cache.claim(cmd(1))
    assert not cache.claim(cmd(2, cid="cmd-1"))
    entry = cache.entry("cmd-1")
    assert entry is not None
    assert entry.nonce == cmd(1).nonce


def test_database_is_wal_with_full_sync(tmp_path: Path, cache: ReplayCache) -> None:
    cache.claim(cmd(1))
    other = sqlite3.connect(tmp_path / "replay.db")
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT nonce, state FROM nonces").fetchall() == [
            (cmd(1).nonce, "accepted")
        ]
    finally:
        other.close()
    assert cache._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


# -- outcomes -----------------------------------------------------------------------------------


def test_finish_records_the_outcome(cache: ReplayCache) -> None:
    assert cache.claim(cmd(1))
    assert cache.outcome("cmd-1") is None
    cache.finish("cmd-1", {"status": "done", "door": "gate-1", "note": "开门"})
    assert cache.outcome("cmd-1") == {"status": "done", "door": "gate-1", "note": "开门"}
    entry = cache.entry("cmd-1")
    assert entry is not None
    assert (entry.state, entry.name, entry.args, entry.exp) == (
        "done",
        "unlock",
        {"door": "gate-1", "seconds": 5},
        T0 + 60,
    )
    assert cache.outcome("never") is None
    assert cache.entry("never") is None


def test_finish_refuses_unknown_finished_and_non_json(cache: ReplayCache) -> None:
    with pytest.raises(KeyError):
        cache.finish("never", {"status": "done"})
    cache.claim(cmd(1))
    with pytest.raises(TypeError):
        cache.finish("cmd-1", {"when": object()})
    with pytest.raises(ValueError, match="JSON compliant"):
        cache.finish("cmd-1", {"x": float("nan")})
    cache.finish("cmd-1", {"status": "done"})
    with pytest.raises(ValueError, match="finished already"):
        cache.finish("cmd-1", {"status": "failed"})
    assert cache.outcome("cmd-1") == {"status": "done"}


def test_duplicate_delivery_executes_once_and_answers_twice(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    verifier = Verifier({key_id(key.public_key()): key.public_key()}, "huayuan-b7", "gw-01")
    raw = sign(
        key,
        make_command(
            "unlock",
            {"door": "gate-1", "seconds": 5},
            site_id="huayuan-b7",
            gateway_id="gw-01",
            now=T0,
        ),
    ).encode()
    executed: list[Command] = []
    answers: list[dict[str, Any]] = []

    def deliver(cache: ReplayCache, now: float) -> None:
        """What the daemon does with one MQTT delivery."""
        try:
            command = verifier.verify(raw, now)
            if not cache.claim(command):
                entry = cache.entry(command.id)
                if entry is not None and entry.outcome is not None:
                    answers.append(dict(entry.outcome))  # a duplicate: the same answer again
                    return
                raise Rejected("replayed", "nonce seen before", command.id)
        except Rejected as err:
            answers.append({"status": "rejected", "reason": err.reason})
            return
        executed.append(command)
        outcome = {"status": "done", "id": command.id}
        cache.finish(command.id, outcome)
        answers.append(outcome)

    with open_cache(tmp_path / "replay.db", now=T0) as cache:
        deliver(cache, T0 + 1)
        deliver(cache, T0 + 2)  # QoS 1 DUP
    with open_cache(tmp_path / "replay.db", now=T0 + 3) as cache:  # after a restart
        deliver(cache, T0 + 3)
        deliver(cache, T0 + 3600)  # much later: expired, whatever the cache says
    assert len(executed) == 1
    assert answers[:3] == [{"status": "done", "id": executed[0].id}] * 3
    assert answers[3] == {"status": "rejected", "reason": "expired"}


# -- restarts and crashes -------------------------------------------------------------------------


def test_claims_and_outcomes_survive_reopening(tmp_path: Path) -> None:
    with open_cache(tmp_path / "replay.db") as cache:
        assert cache.claim(cmd(1))
        cache.finish("cmd-1", {"status": "done"})
        assert cache.claim(cmd(2))
    with open_cache(tmp_path / "replay.db") as cache:
        assert not cache.claim(cmd(1))
        assert not cache.claim(cmd(2))
        assert cache.outcome("cmd-1") == {"status": "done"}
        assert cache.claim(cmd(3))


def test_claimed_but_unfinished_commands_are_listed_as_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    crashed = open_cache(path)  # never closed before the "restart": like a killed process
    try:
        for n in (1, 2, 3):
            assert crashed.claim(cmd(n))
        crashed.finish("cmd-2", {"status": "done"})
        with open_cache(path) as restarted:
            interrupted = restarted.interrupted()
            assert [e.command_id for e in interrupted] == ["cmd-1", "cmd-3"]
            assert all(e.state == "accepted" and e.outcome is None for e in interrupted)
            assert interrupted[0].args == {"door": "gate-1", "seconds": 5}
            assert not restarted.claim(cmd(1))  # never re-run
            restarted.finish("cmd-1", {"status": "interrupted"})
            assert [e.command_id for e in restarted.interrupted()] == ["cmd-3"]
    finally:
        crashed.close()


def test_commands_without_arguments_round_trip(cache: ReplayCache) -> None:
    silence = Command("s1", "silence", "huayuan-b7", "gw-01", NoArgs(), T0, T0 + 30, "s" * 16, "k")
    assert cache.claim(silence)
    entry = cache.entry("s1")
    assert entry is not None
    assert (entry.name, entry.args) == ("silence", {})


async def test_calls_from_worker_threads(cache: ReplayCache) -> None:
    results = await asyncio.gather(*(asyncio.to_thread(cache.claim, cmd(n % 5)) for n in range(20)))
    assert sum(results) == 5
    await asyncio.to_thread(cache.finish, "cmd-0", {"status": "done"})
    assert await asyncio.to_thread(cache.outcome, "cmd-0") == {"status": "done"}


# -- pruning --------------------------------------------------------------------------------------


def test_prune_drops_finished_commands_past_expiry_plus_skew(cache: ReplayCache) -> None:
    for n in range(10):
        assert cache.claim(cmd(n, exp=T0 + 10 * n))
        if n != 3:
            cache.finish(f"cmd-{n}", {"status": "done"})
    # exp + skew <= now  <=>  exp <= T0 + 40: commands 0..4, but 3 is unfinished and stays
    assert cache.prune(T0 + 40 + SKEW) == 4
    assert cache.size() == 6
    assert cache.floor == T0 + 40
    assert [e.command_id for e in cache.interrupted()] == ["cmd-3"]
    assert cache.outcome("cmd-5") == {"status": "done"}
    assert cache.prune(T0 + 40 + SKEW) == 0


def test_prune_keeps_the_cache_bounded(cache: ReplayCache) -> None:
    """A command a second for 20 minutes, pruned each minute: one validity window stays."""
    most = 0
    for second in range(1200):
        now = T0 + second
        c = cmd(second, exp=now + LIFETIME)
        assert cache.claim(c)
        cache.finish(c.id, {"status": "done"})
        if second % 60 == 0:
            cache.prune(now)
            most = max(most, cache.size())
    # kept after a prune at `now`: exp in (now - skew, now + lifetime]
    assert most == LIFETIME + SKEW


def test_floor_refuses_pruned_commands_after_the_clock_steps_back(
    tmp_path: Path, cache: ReplayCache
) -> None:
    old = cmd(1, exp=T0 + 60)
    assert cache.claim(old)
    cache.finish(old.id, {"status": "done"})
    assert cache.prune(T0 + 3600) == 1
    assert cache.entry(old.id) is None
    # the wall clock steps back an hour: the verifier would accept `old` again; the floor not
    assert not cache.claim(old)
    assert cache.claim(cmd(2, exp=T0 + 3600 - SKEW + 1))
    cache.close()
    with open_cache(tmp_path / "replay.db") as reopened:  # the floor is persisted
        assert reopened.floor == T0 + 3600 - SKEW
        assert not reopened.claim(old)


# -- corruption and errors ------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "replay.db"
    path.write_bytes(b"this is not a database\n" * 200)
    with caplog.at_level(logging.ERROR), open_cache(path, now=T0) as cache:
        assert cache.quarantined is not None
        assert cache.quarantined.read_bytes().startswith(b"this is not a database")
        assert cache.size() == 0
        # whatever the lost file held expires by now + skew + lifetime: refused until then
        assert cache.floor == T0 + SKEW + LIFETIME
        assert not cache.claim(cmd(1, exp=T0 + SKEW + LIFETIME))
        assert cache.claim(cmd(2, exp=T0 + SKEW + LIFETIME + 1))
    assert "is corrupt" in caplog.text
    assert str(cache.quarantined) in caplog.text
    with open_cache(path) as again:  # the fresh file is a good one
        assert again.quarantined is None
        assert not again.claim(cmd(2, exp=T0 + SKEW + LIFETIME + 1))


def test_a_damaged_page_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    with open_cache(path) as cache:
        for n in range(300):
            cache.claim(cmd(n, exp=T0 + 1000 + n))
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[2 * page : 3 * page] = b"\xa5" * page
    path.write_bytes(bytes(data))
    with open_cache(path) as cache:
        assert cache.quarantined is not None
        assert cache.size() == 0
    with open_cache(path) as cache:  # a second quarantine never overwrites the first
        assert cache.quarantined is None
    path.write_bytes(b"x" * 4096)
    first = sorted(tmp_path.glob("replay.db.corrupt-*"))
    with open_cache(path) as cache:
        assert cache.quarantined is not None
        assert cache.quarantined not in first
    assert len(sorted(tmp_path.glob("replay.db.corrupt-*"))) == len(first) + 1


def test_an_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "replay.db").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        open_cache(tmp_path / "replay.db")
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create the folder"):
        open_cache(tmp_path / "file" / "replay.db")


def test_a_failed_write_is_a_store_error_and_nothing_is_claimed(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "replay.db")
    cache.close()
    with pytest.raises(StoreError):
        cache.claim(cmd(1))
    with open_cache(tmp_path / "replay.db") as reopened:
        assert reopened.claim(cmd(1))
