"""What the rows of ``faults.py`` share: the table, a row's rig, the books it keeps.

Contract:
- ``Result`` is one row of the table (and the lines that explain it); ``table`` prints them
  all as one Markdown table.
- ``rig`` starts every peer of a row (``fault_rig``: upstream and local broker, the slave, the
  platform's subscriber, the presser, the gateway's config) and stops them all by PID, the
  gateway first. ``Rig.finish`` ends a row the same way every time: the devices fall silent,
  the last readings drain, SIGTERM, the store file is read.
- ``telemetry`` and ``alarms`` are the books: every answer of a counted device is a reading
  upstream or in a gap report; every press is one raised alarm upstream.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fault_proxy import Link
from fault_rig import Gateway, Platform, Presser, Slave, StoreFile, Tally, gateway_doc, read_store
from harness.measure import pct
from harness.procs import Broker, workdir

COMMIT_INTERVAL = 1.0  # s: the shipped store.commit_interval, which the rows keep


# -- the table ----------------------------------------------------------------------------------


@dataclass
class Result:
    """One row of the table, and the lines that explain it."""

    fault: str
    size: str = "-"
    offered: str = "-"
    arrived: str = "-"
    lost: str = "-"
    window: str = "-"
    duplicates: str = "-"
    alarm: str = "-"
    rss: str = "-"
    accounted: str = "-"
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # for --json


COLUMNS = [
    ("fault", "fault"),
    ("size", "size"),
    ("offered", "offered"),
    ("arrived", "arrived upstream (unique)"),
    ("lost", "reported lost (gaps)"),
    ("window", "lost in the documented window"),
    ("duplicates", "duplicates"),
    ("alarm", "alarm latency p50 / p99 / max"),
    ("rss", "gateway peak RSS"),
    ("accounted", "all accounted"),
]


def table(results: Sequence[Result]) -> str:
    """The results as one Markdown table."""
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in results:
        lines.append("| " + " | ".join(str(getattr(r, key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def n(x: float) -> str:
    return f"{x:,.0f}"


def lat(values: Sequence[float]) -> str:
    """``p50 / p99 / max`` of seconds: ms below 10 s, else s."""
    if not values:
        return "n/a"
    ps = [pct(values, p) for p in (50, 99, 100)]
    if ps[-1] < 10:
        return " / ".join(f"{1000 * v:.0f}" for v in ps) + " ms"
    return " / ".join(f"{v:.1f}" for v in ps) + " s"


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


# -- the rig of a row ---------------------------------------------------------------------------


@dataclass
class Rig:
    """One row's peers: brokers, slave, platform, presser and the gateway."""

    tmp: Path
    up: Broker
    local: Broker
    slave: Slave
    platform: Platform
    presser: Presser
    gw: Gateway
    devices: list[str]
    failed: dict[str, int] = field(default_factory=dict)  # failed polls before ``finish``
    link: Link | None = None  # the fault proxy the gateway reaches the broker through

    def started(self) -> float:
        """Start the gateway and wait until its button and upstream sessions are up."""
        spawned = time.time()
        ready = self.gw.start()
        for what in ("subscribed to 1 button topics", "connected to upstream broker"):
            if self.gw.wait_log(what, spawned, 30) is None:
                raise RuntimeError(f"gateway: no {what!r} within 30 s; see {self.gw.log}")
        return ready

    def pressing(self, until: float, every: float, also: Callable[[], bool] | None = None) -> int:
        """Press a button every ``every`` s until monotonic ``until`` (or ``also()`` is true)."""
        pressed = 0
        next_press = time.monotonic()
        while time.monotonic() < until:
            if time.monotonic() >= next_press:
                self.presser.press()
                pressed += 1
                next_press += every
            if also is not None and also():
                break
            time.sleep(min(0.2, max(0.0, next_press - time.monotonic())))
        return pressed

    def drain(self, every: float, timeout: float) -> float:
        """Keep pressing until the sink confirmed everything (three presses at least)."""
        t0 = time.monotonic()
        start = len(self.presser.sent)
        drained = math.nan

        def done() -> bool:
            nonlocal drained
            if math.isnan(drained) and self.gw.backlog() == 0:
                drained = time.monotonic() - t0
            return not math.isnan(drained) and len(self.presser.sent) - start >= 3

        self.pressing(t0 + timeout, every, done)
        return drained

    def finish(self) -> tuple[dict[int, int], StoreFile, int | None, float]:
        """Silence the devices, let the last readings drain, stop the gateway with SIGTERM.

        No answer is on the wire when it stops, so nothing is lost at a clean stop. Returns
        the answers per counted address, the store as left, the exit code and the stop time.
        """
        metrics = self.gw.metrics()
        self.failed = {
            dev: int(metrics.get(f'cgw_device_poll_failures_total{{device="{dev}"}}', 0))
            for dev in self.devices
        }  # before the silence: a poll that failed while the slave answered came too late
        answered = self.slave.silence()
        time.sleep(COMMIT_INTERVAL + 1.5)  # the last answers committed, the polls timed out
        self.gw.wait_drained(120)
        self.platform.quiet(1.0, 30)
        rc, took = self.gw.stop()
        self.platform.quiet(1.0, 10)
        return answered, read_store(self.gw.store), rc, took


@contextlib.contextmanager
def rig(
    name: str,
    devices: list[dict[str, Any]],
    *,
    keep: str | None = None,
    persistent: bool = False,
    store_dir: Path | None = None,
    mqtt: dict[str, Any] | None = None,
    lying: dict[str, set[str]] | None = None,
    lies: dict[str, Any] | None = None,
    link: bool = False,
) -> Iterator[Rig]:
    """Every peer of a row, started; all stopped by PID afterwards, the gateway first.

    ``keep``: a folder where the gateway's log is copied at the end (``--logs``). ``link``:
    the gateway reaches the upstream broker through the fault proxy (``Rig.link``).
    """
    with workdir(f"cgw-faults-{name}-") as tmp, contextlib.ExitStack() as stack:
        brokers = []
        for sub, persists in (("upstream", persistent), ("local", False)):
            (tmp / sub).mkdir()
            broker = Broker(tmp / sub, persistence=persists)
            stack.callback(broker.stop)
            broker.start()
            brokers.append(broker)
        up, local = brokers
        counted = [int(d["points"][0]["address"]) for d in devices if d["id"].startswith("dev-")]
        slave = stack.enter_context(Slave(counted, **(lies or {})))
        names = [str(d["id"]) for d in devices]
        platform = stack.enter_context(
            Platform(up.port, [d for d in names if d.startswith("dev-")], lying)
        )
        presser = stack.enter_context(Presser(local.port))
        store = (store_dir or tmp) / "buffer.db"
        proxy = stack.enter_context(Link(up.port)) if link else None
        upstream = proxy.port if proxy is not None else up.port
        gw = Gateway(tmp, gateway_doc(store, upstream, local.port, slave.port, devices, mqtt))

        def stop_gateway() -> None:
            if gw.daemon is not None:
                gw.daemon.__exit__(None, None, None)

        stack.callback(lambda: gw.keep_log(Path(keep) if keep else None, name))
        stack.callback(stop_gateway)
        try:
            yield Rig(tmp, up, local, slave, platform, presser, gw, names, link=proxy)
        except BaseException:
            lines = gw.log.read_text().splitlines()[-15:] if gw.log.exists() else []
            print("  gateway.log (last lines):\n" + "\n".join("    " + ln for ln in lines))
            raise


# -- the books ----------------------------------------------------------------------------------


@dataclass
class Telemetry:
    """Per counted device: answers given, readings arrived, reported lost, missing."""

    offered: int = 0
    arrived: int = 0
    gaps: int = 0
    missing: int = 0  # answers whose reading never arrived
    late: int = 0  # of those: answers to polls that had timed out (failed polls, not losses)
    beyond: int = 0  # readings with a number no answer had (never expected)
    unmatched: list[str] = field(default_factory=list)  # devices where arrived + gaps != offered


def telemetry(
    t: Tally, answered: dict[int, int], devices: Sequence[str], failed: dict[str, int] | None = None
) -> Telemetry:
    """The counted devices' books: every answer is a reading upstream or in a gap.

    An answer the slave gave after the gateway's poll had timed out never became a reading:
    up to ``failed[device]`` (the gateway's failed polls) missing answers are such, not losses.
    """
    out = Telemetry()
    for dev in devices:
        if not dev.startswith("dev-"):
            continue
        k = int(dev.rsplit("-", 1)[1])
        offered = answered.get(2 * k, 0)
        values = t.values[dev]
        got = sum(1 for v in range(1, offered + 1) if v in values)
        late = min(max(0, offered - got - t.gaps[dev]), (failed or {}).get(dev, 0))
        out.offered += offered
        out.arrived += got
        out.beyond += values.count - got
        out.gaps += t.gaps[dev]
        out.missing += offered - got
        out.late += late
        if got + t.gaps[dev] + late != offered:
            out.unmatched.append(f"{dev}: {offered} answered, {got} arrived, {t.gaps[dev]} in gaps")
    return out


def alarms(t: Tally, sent: dict[str, tuple[float, float]]) -> tuple[int, list[str], list[str]]:
    """(raised upstream, presses with no raised alarm, presses with more than one alarm)."""
    missing = [d for d in sent if d not in t.raised]
    double = [d for d, ids in t.alarm_ids.items() if len(ids) > 1]
    return len(sent) - len(missing), missing, double


def copies(t: Tally) -> str:
    total = sum(t.copies.values())
    lanes = ", ".join(f"{lane} {c:,}" for lane, c in sorted(t.copies.items()) if c)
    return f"{total:,}" + (f" ({lanes}; {t.redelivered:,} resent by the broker)" if total else "")


def store_line(s: StoreFile) -> str:
    counters = ", ".join(f"{k} {v}" for k, v in sorted(s.counters.items()) if v) or "none"
    return (
        f"  store after the stop: integrity_check {s.integrity}; rows still waiting "
        f"{sum(s.waiting.values())} {dict(s.waiting) or ''}; counters: {counters}"
    )


def common_notes(t: Tally, s: StoreFile, rc: int | None, took: float) -> list[str]:
    return [
        store_line(s),
        f"  epochs upstream {len(t.epochs)} (the file's: {s.epoch}); store-replaced events "
        f"{t.replaced}; gap reports {t.gap_reports}; "
        + (
            f"SIGTERM -> exit {rc} in {took:.2f} s"
            if rc is not None
            else "SIGTERM: NO EXIT within 30 s (stacks in the gateway log, then SIGKILL)"
        ),
    ]
