"""The alarm engine: the async shell around the pure rules and lifecycle.

Contract:
- Inputs (samples, device status, contacts; ``condition``: a verdict reached elsewhere, a
  welfare check) are queued without blocking and handled in arrival order by ``run``. Besides
  the rules, it raises ``input_unavailable`` for a device a contact rule names that does not
  run. ``covers(event)`` says whether any contact rule names a contact.
- Every transition is committed together with its ``alarm/<id>`` message in the alarm lane
  (``Store.transact``): the alarm table and what the platform hears never disagree, and the
  alarm lane drains before any backlog. Inputs that are waiting when the engine takes one
  (up to ``BATCH_MAX``) are handled together and their transitions committed in one
  transaction, an urgent one that goes before queued telemetry on the store thread: a burst
  (a fire panel tripping many contacts) costs one fsync, not one per alarm. Open alarms
  survive a restart (``open`` reloads them and their escalation timers continue).
- Notifications go out in their own tasks, so a slow channel never delays the next alarm;
  every attempt is written into the alarm's history; the first delivery makes it "notified".
- ``outputs`` (siren, strobe) is called with the highest severity among unacknowledged
  alarms whenever that changes, and with None once all are acknowledged: it works with the
  uplink down, since nothing here waits for the upstream.
"""

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from gateway.alarms.channels import ChannelWatch
from gateway.alarms.delivery import Delivery, Dispatcher, send_planned
from gateway.alarms.lifecycle import Lifecycle
from gateway.alarms.model import UNACKED, Alarm, Condition, Notify, Transition
from gateway.alarms.records import alarm_record, alarm_row, journal_note
from gateway.alarms.report import Targets, response_report
from gateway.alarms.rules import Evaluator
from gateway.alarms.siren import Siren
from gateway.alarms.wording import rule_types, staff_message
from gateway.config.alarms import AlarmsConfig
from gateway.core.clock import Clock
from gateway.core.messages import ContactEvent, DeviceStatus, Quality, Record, Sample
from gateway.core.snapshots import AlarmsSnapshot, ModemState, OpenAlarm
from gateway.store import Store, StoreFullError

BATCH_MAX = 256  # inputs handled, and their transitions committed, together
SAMPLES_WAITING = 2000  # readings the inbox holds at most; contacts and status are never refused
# transitions, their alarm-lane records and their alarm-table rows, as one caller handed them
_Pending = tuple[list[Transition], list[Record], list[tuple[str, int, float, str]]]
# an input, or a future a caller of ``settled`` waits on (done once what came before it is)
_Input = Sample | DeviceStatus | ContactEvent | Condition | asyncio.Future[None]

log = logging.getLogger(__name__)


class AlarmEngine:
    """Rules, lifecycle, persistence, notification and outputs for one gateway."""

    def __init__(
        self,
        cfg: AlarmsConfig,
        store: Store,
        clock: Clock,
        synced: Callable[[], bool],
        *,
        site: str,
        dispatcher: Dispatcher | None = None,
        outputs: Callable[[str | None], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.synced = synced
        self.site = site
        self.dispatcher = dispatcher
        self.console: str | None = None  # see ``reconfigure``
        self.fallback: frozenset[str] = frozenset()  # see ``reconfigure``
        self.siren = Siren(outputs)  # sirens and strobes
        self.rules = Evaluator(cfg)
        self.lifecycle = Lifecycle(cfg, new_id=lambda: uuid.uuid4().hex[:16])
        self._types = rule_types(cfg)
        self._inbox: asyncio.Queue[_Input] = asyncio.Queue()
        self.channels = ChannelWatch(cfg.ladders[0].id)  # staff channels that stopped working
        self._tg: asyncio.TaskGroup | None = None  # ``run``'s, while it runs
        self._samples_waiting = 0  # readings in the inbox
        self.samples_dropped = 0  # readings refused while SAMPLES_WAITING waited
        self._pending: list[_Pending] = []  # transitions waiting for the next group commit
        self._committing = asyncio.Lock()
        self._batch: asyncio.Future[None] | None = None  # the next group commit, once awaited
        self.listeners: list[Callable[[], None]] = []  # told after every committed change
        self.ready = asyncio.Event()
        # time to acknowledge per severity, for the metrics: (acknowledged alarms, seconds)
        self.acked: dict[str, tuple[int, float]] = {}

    def reconfigure(
        self,
        cfg: AlarmsConfig,
        dispatcher: Dispatcher | None,
        console: str | None = None,
        fallback: frozenset[str] = frozenset(),
    ) -> None:
        """New rules, ladders and channels; only while ``run`` is not running (a reload).

        ``console``: the field console's address as staff reach it; messages link to it.
        ``fallback``: channels used only while the others fail (``ChannelWatch.plan``).
        The next ``run`` reloads the open alarms from the store, so none is forgotten; what
        rules were timing (a threshold's minimum duration) starts over. Queued inputs stay.
        """
        self.cfg, self.dispatcher, self.console = cfg, dispatcher, console
        self.fallback = fallback
        self._types = rule_types(cfg)
        self.channels.ladder = cfg.ladders[0].id  # the figures of each channel go on
        self.rules = Evaluator(cfg)
        self.lifecycle = Lifecycle(cfg, new_id=lambda: uuid.uuid4().hex[:16])
        self.ready.clear()

    # -- inputs (called on the loop thread; never block) ----------------------------------

    def sample(self, sample: Sample) -> None:
        """A reading for threshold rules; dropped (counted) while ``SAMPLES_WAITING`` wait.

        Only plain readings are ever dropped: contacts, device status and samples carrying a
        contact (a Modbus discrete input) always get in, so a flood of telemetry cannot grow
        memory or bury an alarm.
        """
        contact = any(isinstance(r.value, bool) for r in sample.readings)  # Modbus inputs
        if self._samples_waiting >= SAMPLES_WAITING and not contact:
            if not self.samples_dropped:
                log.warning("alarm engine behind: readings dropped for the threshold rules")
            self.samples_dropped += 1
            return
        self._samples_waiting += 1
        self._inbox.put_nowait(sample)

    def status(self, status: DeviceStatus) -> None:
        self._inbox.put_nowait(status)

    def contact(self, event: ContactEvent) -> None:
        self._inbox.put_nowait(event)

    async def settled(self) -> None:
        """Return once every input queued before this call is handled and the transitions it
        caused are committed (an MQTT button's message is acknowledged only then)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(done)
        await done

    def condition(self, cond: Condition) -> None:
        """A verdict reached outside the configured rules (a welfare check), never refused."""
        self._inbox.put_nowait(cond)

    def modem(self, channel: str, state: ModemState) -> None:
        """A modem channel's modem was checked: a lost one raises ``channel_down``."""
        for cond in self.channels.modem(channel, state, self.clock.wall()):
            self._inbox.put_nowait(cond)

    def covers(self, event: ContactEvent) -> bool:
        """Whether a contact rule of the current config names ``event``'s device and input."""
        return self.rules.covers(event)

    async def open(self) -> None:
        """Reload open alarms (the store's schema holds their table)."""

        def load(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute("SELECT body FROM alarms WHERE open=1 ORDER BY raised_at")
            return [json.loads(r[0]) for r in rows]

        rows = await self.store.transact(load)
        self.lifecycle.load(rows, self.clock.wall(), self.clock.mono())
        for alarm in self.lifecycle.alarms.values():
            self.rules.restore(alarm.cause, alarm.active)
        if rows:
            log.warning("%d alarms still open from before the restart", len(rows))
        self._update_outputs()

    async def run(self) -> None:
        """Handle inputs and timers until cancelled."""
        await self.open()
        self.ready.set()
        async with asyncio.TaskGroup() as tg:
            self._tg = tg  # for news of acknowledgements, which arrive from outside ``run``
            try:
                await self._loop(tg)
            finally:
                self._tg = None  # an acknowledgement between runs (a reload) sends no news

    async def _loop(self, tg: asyncio.TaskGroup) -> None:
        while True:
            deadline = self.lifecycle.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock.mono())
            try:
                item = await asyncio.wait_for(self._inbox.get(), timeout)
            except TimeoutError:
                item = None
            if item is not None:
                items = [item]  # with every input already waiting: one commit for all
                while len(items) < BATCH_MAX and not self._inbox.empty():
                    items.append(self._inbox.get_nowait())
                inputs = [i for i in items if not isinstance(i, asyncio.Future)]
                await self._handle([c for i in inputs for c in self._conditions(i)], tg)
                for i in items:  # committed: what waited for them may go on
                    if isinstance(i, asyncio.Future) and not i.done():
                        i.set_result(None)
            notes = self.lifecycle.tick(self.clock.mono())
            self._send(notes, tg)

    def _conditions(
        self, item: Sample | DeviceStatus | ContactEvent | Condition
    ) -> list[Condition]:
        if isinstance(item, Condition):  # the engine's own: a staff channel went down or up
            return [item]
        if isinstance(item, ContactEvent):
            return self.rules.on_contact(item)
        if isinstance(item, DeviceStatus):
            return self.rules.on_status(item)
        self._samples_waiting -= 1
        out = self.rules.on_sample(item, self.clock.mono())
        for r in item.readings:  # Modbus discrete inputs and coils are contacts too
            if isinstance(r.value, bool) and r.quality is Quality.GOOD:
                out += self.rules.on_contact(ContactEvent(item.device, r.name, r.value, item.ts))
        return out

    async def _handle(self, conditions: list[Condition], tg: asyncio.TaskGroup) -> None:
        transitions: list[Transition] = []
        notes: list[Notify] = []
        for cond in conditions:
            changed, told = self.lifecycle.on_condition(cond, self.clock.mono())
            transitions += changed
            notes += told
        await self._commit(transitions)  # before anyone is told: commit, then notify
        self._send(notes, tg)

    # -- operators ------------------------------------------------------------------------

    async def acknowledge(self, alarm_id: str, by: str) -> list[Transition]:
        """Acknowledge an open alarm (raises ``LifecycleError`` if there is none)."""
        out = self.lifecycle.acknowledge(alarm_id, by, self.clock.wall())
        await self._commit(out)
        return out

    async def reset(self, alarm_id: str, by: str) -> list[Transition]:
        """Reset a latched alarm whose input is back to normal."""
        out = self.lifecycle.reset(alarm_id, by, self.clock.wall())
        await self._commit(out)
        return out

    async def acknowledge_all(self, by: str) -> int:
        """Acknowledge every unacknowledged alarm (a physical acknowledge button)."""
        ids = [a.id for a in self.open_alarms() if a.state in UNACKED]
        for alarm_id in ids:
            await self.acknowledge(alarm_id, by)
        return len(ids)

    async def reset_all(self, by: str) -> int:
        """Reset every latched alarm whose input is back to normal (a physical reset button)."""
        ids = [a.id for a in self.open_alarms() if a.latched and not a.active]
        for alarm_id in ids:
            await self.reset(alarm_id, by)
        return len(ids)

    async def response_report(self, since: float, until: float | None = None) -> dict[str, Any]:
        """Time-to-acknowledge figures over alarms raised from ``since`` until ``until`` (None:
        until now), as ``gateway.alarms.report`` computes them."""
        targets = Targets.of(self.cfg)
        return await response_report(self.store, since, targets, until=until, now=self.clock.wall())

    def snapshot(self) -> AlarmsSnapshot:
        """Whether the engine has loaded its open alarms, which are open, acknowledgements."""
        return AlarmsSnapshot(
            ready=self.ready.is_set(),
            open=tuple(OpenAlarm(a.id, a.severity, a.state in UNACKED) for a in self.open_alarms()),
            acked=dict(self.acked),
            channels=self.channels.snapshot(),
            samples_dropped=self.samples_dropped,
            siren=self.siren.sounding,
        )

    def open_alarms(self) -> list[Alarm]:
        """Open alarms, oldest first."""
        return sorted(self.lifecycle.alarms.values(), key=lambda a: a.raised_at)

    # -- effects --------------------------------------------------------------------------

    async def _commit(self, transitions: Sequence[Transition]) -> None:
        """Commit ``transitions`` with their messages; returns once they are on disk.

        Group commit: whoever finds no commit running takes every transition waiting (its own
        and those of callers queued behind the running commit: the inputs, each delivery task's
        "notified", acknowledgements) into one transaction. On slow storage (an SD card's 20 ms
        flush) a burst then costs a few flushes instead of one per transition.
        """
        if not transitions:
            return
        synced = self.synced()
        self._pending.append(
            (
                list(transitions),
                [alarm_record(t, synced) for t in transitions],
                [alarm_row(t.alarm) for t in transitions],
            )
        )
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
        batch = self._batch
        async with self._committing:
            if batch.done():  # a commit that ran while this one waited took it along
                return batch.result()
            todo, self._pending = self._pending, []
            self._batch = asyncio.get_running_loop().create_future()
            try:
                await self._write(todo)
            except BaseException as exc:
                batch.set_exception(exc)
                batch.exception()  # the raise below reports it; waiters re-raise it
                raise
            batch.set_result(None)

    async def _write(self, todo: list[_Pending]) -> None:
        transitions = [t for ts, _, _ in todo for t in ts]
        records = [r for _, rs, _ in todo for r in rs]
        rows = [row for _, _, rs in todo for row in rs]

        def save(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO alarms(id, open, raised_at, body) VALUES(?, ?, ?, ?)", rows
            )

        for t in transitions:
            level = logging.WARNING if t.alarm.severity != "info" else logging.INFO
            log.log(
                level,
                "alarm %s %s: %s (%s)",
                t.alarm.id,
                t.alarm.state.value,
                journal_note(t),
                t.alarm.device,
                extra={"alarm": t.alarm.id, "device": t.alarm.device},
            )
        try:
            await self.store.transact(save, records)
        except StoreFullError as exc:
            log.error("alarm messages wait in memory: %s", exc)
        for t in transitions:
            ack = t.alarm.time_to_ack
            if ack is not None and t.previous in UNACKED:  # this transition acknowledged it
                n, total = self.acked.get(t.alarm.severity, (0, 0.0))
                self.acked[t.alarm.severity] = (n + 1, total + ack)
        self._update_outputs()
        for listener in self.listeners:
            listener()
        if self._tg is not None:
            self._send(self.lifecycle.news(transitions), self._tg)

    def _send(self, notes: list[Notify], tg: asyncio.TaskGroup) -> None:
        for note in notes:
            tg.create_task(self._deliver(note), name=f"alarm:notify:{note.alarm.id}")

    async def _deliver(self, note: Notify) -> None:
        alarm = note.alarm
        link = f"{self.console.rstrip('/')}/#alarm/{alarm.id}" if self.console else None
        cfg, rule_type = self.cfg, self._types.get(alarm.rule)
        title, body = staff_message(
            alarm, note, self.site, cfg.language, cfg.timezone, rule_type, link
        )
        results: list[Delivery] = []
        external = [c for c in note.channels if c != "log"]
        if "log" in note.channels:
            level = logging.CRITICAL if alarm.severity == "critical" else logging.WARNING
            log.log(level, "ALARM %s", title, extra={"alarm": alarm.id})
            results.append(Delivery("log", True))
        sent: list[Delivery] = []
        if external and self.dispatcher is not None:
            severity = "info" if note.news else alarm.severity  # news is not an alarm
            plan = self.channels.plan(external, self.fallback)  # modems: internet down
            sent = await send_planned(self.dispatcher, plan, title, body, severity)
        elif external:
            results += [Delivery(c, False, "no notification channels configured") for c in external]
        results += sent
        wall = self.clock.wall()
        for cond in self.channels.record(sent, wall):
            self._inbox.put_nowait(cond)
        for d in results:
            alarm.history.append(
                (wall, "notify", f"{d.channel}: {'ok' if d.ok else 'failed: ' + d.error}")
            )
        if any(d.ok for d in results) and not note.news:
            await self._commit(self.lifecycle.notified(alarm.id, wall))

    def silence(self) -> int:
        """Stop the siren for the alarms sounding now without acknowledging them.

        Escalation goes on; a new alarm sounds again. Not kept across a restart: a restarted
        gateway sounds for every unacknowledged alarm. Returns how many alarms were silenced.
        """
        return self.siren.silence(self.lifecycle.alarms.values())

    def _update_outputs(self) -> None:
        self.siren.update(self.lifecycle.alarms.values())
