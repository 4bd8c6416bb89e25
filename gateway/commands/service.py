"""The command channel at run time: verify, claim, execute once, answer, audit.

Contract:
- ``submit(name, payload)`` is called by the MQTT sink for every message on ``cmd/<name>``;
  it only queues (never blocks the connection). ``run()`` handles the queue in order.
- Each message is verified (``Verifier``), refused while the clock is not synchronised if so
  configured (reason ``clock_unsynced``), then claimed in the persistent ``ReplayCache``
  *before* it is executed. A nonce or id claimed before is not executed again: a duplicate
  delivery of a finished command is answered again with its recorded outcome, one still
  running is ignored, anything else is rejected as ``replayed``.
- Results go out on ``cmd-result/<id>`` and every decision on ``audit`` (both event lane),
  and to the log. The audit names the wire form (``form``: ``jws`` or ``legacy``) whenever it
  is known, and ``received`` counts messages by form, so the end of the legacy transition can
  be seen. A rejection of a message whose signature did not verify is answered only
  when its claimed id is well-formed, and audited at most ``audit_rate`` times a minute (the
  rest are counted), so a flood of forgeries cannot fill the store.
- At start, commands claimed but never finished (a crash mid-execution) are reported as
  ``interrupted`` and never re-run.
- ``Actions`` is what commands act on (the alarm engine, door terminals, the siren);
  an action that fails answers ``failed`` with the reason, never raises out of ``run``.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gateway.commands.model import AlarmArgs, AwayArgs, Command, UnlockArgs
from gateway.commands.replay import ReplayCache
from gateway.commands.verify import Rejected, Verifier
from gateway.config.commands import CommandsConfig
from gateway.config.keys import load_public_keys
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError
from gateway.core.messages import Lane, Record
from gateway.core.snapshots import CommandsSnapshot

log = logging.getLogger(__name__)
PRUNE_EVERY = 60.0  # seconds between replay-cache prunes
QUEUE_MAX = 1000  # queued messages; beyond, new ones are dropped and counted


class ActionFailed(GatewayError):
    """The command was valid but could not be carried out; the message says why."""


class Actions(Protocol):
    """What commands act on."""

    async def acknowledge(self, alarm_id: str, by: str) -> dict[str, Any]: ...
    async def reset(self, alarm_id: str, by: str) -> dict[str, Any]: ...
    async def unlock(self, door: str, seconds: int, why: str) -> dict[str, Any]: ...
    async def silence(self) -> dict[str, Any]: ...
    async def status(self) -> dict[str, Any]: ...
    async def away(
        self, household: str, start: float, end: float, note: str, by: str
    ) -> dict[str, Any]: ...


class CommandService:
    """Verifies and executes platform commands; answers and audits through the store."""

    def __init__(
        self,
        cfg: CommandsConfig,
        store_path: Path,
        site_id: str,
        gateway_id: str,
        add: Callable[[Record], None],
        clock: Clock,
        synced: Callable[[], bool],
        actions: Actions,
    ) -> None:
        """Load the public keys (``ConfigError`` if unusable)."""
        self.cfg = cfg
        self.add = add
        self.clock = clock
        self.synced = synced
        self.actions = actions
        self.verifier = Verifier(
            load_public_keys(cfg.public_keys),
            site_id,
            gateway_id,
            max_skew=cfg.max_skew,
            max_lifetime=cfg.max_lifetime,
            legacy=cfg.accept_legacy,
        )
        self.cache_path = cfg.replay_cache or store_path.with_name(store_path.name + ".commands.db")
        self.executed = 0
        self.rejected: Counter[str] = Counter()
        self.received: Counter[str] = Counter()  # verified or rejected messages, by wire form
        self.unaudited = 0  # rejections counted but not audited (rate limit)
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUE_MAX)
        self._window = (0.0, 0)  # (minute start, unauthenticated rejections audited in it)

    def submit(self, name: str, payload: bytes) -> None:
        """Queue one message from ``cmd/<name>`` (called on the loop thread by the sink)."""
        try:
            self._queue.put_nowait((name, payload))
        except asyncio.QueueFull:
            self.rejected["overload"] += 1

    def snapshot(self, dropped: int = 0) -> CommandsSnapshot:
        """The channel's counters; ``dropped``: messages that came while it was not running."""
        rejected, received = dict(self.rejected), dict(self.received)
        return CommandsSnapshot(True, self.executed, self.unaudited, rejected, dropped, received)

    async def run(self) -> None:
        """Open the replay cache, report interrupted commands, then serve until cancelled."""
        cfg = self.cfg
        cache = await asyncio.to_thread(
            ReplayCache.open,
            self.cache_path,
            now=self.clock.wall(),
            max_skew=cfg.max_skew,
            max_lifetime=cfg.max_lifetime,
        )
        try:
            for entry in await asyncio.to_thread(cache.interrupted):
                outcome = {
                    "status": "interrupted",
                    "detail": "the gateway stopped while executing it; not re-run, check the"
                    " device",
                }
                await asyncio.to_thread(cache.finish, entry.command_id, outcome)
                self._answer(entry.command_id, entry.name, outcome)
                self._audit(entry.command_id, entry.name, "interrupted", outcome["detail"], True)
            next_prune = 0.0
            while True:
                name, payload = await self._queue.get()
                now = self.clock.wall()
                if self.clock.mono() >= next_prune:
                    next_prune = self.clock.mono() + PRUNE_EVERY
                    await asyncio.to_thread(cache.prune, now)
                await self._handle(cache, name, payload, now)
        finally:
            await asyncio.to_thread(cache.close)

    async def _handle(self, cache: ReplayCache, name: str, payload: bytes, now: float) -> None:
        try:
            cmd = self.verifier.verify(payload, now, topic_name=name)
        except Rejected as rej:
            if rej.form is not None:
                self.received[rej.form] += 1
            self._reject(rej.reason, rej.detail, rej.command_id, name, rej.authenticated, rej.form)
            return
        self.received[cmd.form] += 1
        if self.cfg.require_synced_clock and not self.synced():
            detail = "the gateway's clock is not synchronised; expiry cannot be judged"
            self._reject("clock_unsynced", detail, cmd.id, cmd.name, True, cmd.form)
            return
        if not await asyncio.to_thread(cache.claim, cmd):
            entry = await asyncio.to_thread(cache.entry, cmd.id)
            if entry is not None and entry.nonce == cmd.nonce:
                if entry.outcome is not None:  # a duplicate delivery: the same answer again
                    self._answer(cmd.id, cmd.name, dict(entry.outcome))
                detail = "delivered again; not re-run"
                self._audit(cmd.id, cmd.name, "duplicate", detail, True, form=cmd.form)
                return
            self._reject("replayed", "nonce or id seen before", cmd.id, cmd.name, True, cmd.form)
            return
        outcome = await self._execute(cmd)
        await asyncio.to_thread(cache.finish, cmd.id, outcome)
        self.executed += 1
        self._answer(cmd.id, cmd.name, outcome)
        self._audit(cmd.id, cmd.name, outcome["status"], outcome.get("detail", ""), True, cmd)

    async def _execute(self, cmd: Command) -> dict[str, Any]:
        args = cmd.args
        try:
            if isinstance(args, AlarmArgs):
                by = f"platform:{args.by}"
                act = self.actions.acknowledge if cmd.name == "ack" else self.actions.reset
                result = await act(args.alarm_id, by)
            elif isinstance(args, UnlockArgs):
                result = await self.actions.unlock(args.door, args.seconds, f"command {cmd.id}")
            elif isinstance(args, AwayArgs):
                by = f"platform:{args.by}"
                result = await self.actions.away(
                    args.household, args.start, args.end, args.note, by
                )
            elif cmd.name == "silence":
                result = await self.actions.silence()
            else:
                result = await self.actions.status()
        except ActionFailed as exc:
            return {"status": "failed", "detail": str(exc)}
        return {"status": "executed", "result": result}

    # -- answers and the audit trail ------------------------------------------------------

    def _reject(
        self,
        reason: str,
        detail: str,
        cid: str | None,
        name: str,
        authenticated: bool,
        form: str | None,
    ) -> None:
        self.rejected[reason] += 1
        if not authenticated:
            start, n = self._window
            now = self.clock.mono()
            if now - start >= 60.0:
                start, n = now, 0
            if n >= self.cfg.audit_rate:
                self.unaudited += 1
                return
            self._window = (start, n + 1)
        outcome = {"status": "rejected", "reason": reason, "detail": detail}
        if cid is not None:
            self._answer(cid, name, outcome)
        self._audit(cid, name, "rejected", f"{reason}: {detail}", authenticated, form=form)

    def _answer(self, cid: str, name: str, outcome: dict[str, Any]) -> None:
        body = {"command_id": cid, "name": name, **outcome}
        self.add(self._record(f"cmd-result/{cid}", body))

    def _audit(
        self,
        cid: str | None,
        name: str,
        outcome: str,
        detail: str,
        authenticated: bool,
        cmd: Command | None = None,
        form: str | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "kind": "command",
            "command_id": cid,
            "name": name[:64],
            "outcome": outcome,
            "detail": detail[:300],
            "authenticated": authenticated,
        }
        form = cmd.form if cmd is not None else form
        if form is not None:
            body["form"] = form
        if cmd is not None:
            body |= {"kid": cmd.kid, "args": cmd.arguments(), "iat": cmd.iat, "exp": cmd.exp}
        self.add(self._record("audit", body))
        level = logging.INFO if outcome in ("executed", "duplicate") else logging.WARNING
        log.log(level, "command %s %s: %s %s", name[:64], cid or "(no id)", outcome, detail[:300],
                extra={"command": cid, "outcome": outcome})  # fmt: skip

    def _record(self, topic: str, body: dict[str, Any]) -> Record:
        return Record(Lane.EVENT, topic, self.clock.wall(), self.synced(), fields=body)
