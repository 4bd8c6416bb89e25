"""Access events, the door and terminal trackers over a hand-driven clock, and pseudonyms.

Everything here is pure: time is a number the test passes in (monotonic ``now``; wall time is
``WALL0 + now``), so every edge (exactly at a window, one step past it) is checked exactly.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.secret_keys import decode_key, load_key
from gateway.core.access import (
    ALARM_KINDS,
    AccessEvent,
    DoorPolicy,
    DoorTracker,
    Kind,
    TerminalWatch,
)
from gateway.core.errors import ConfigError
from gateway.pipeline.privacy import Pseudonymiser, key_id

WALL0 = 1_800_000_000.0
KEY = bytes(range(32))
OLD_KEY = bytes(range(100, 132))
DOOR = DoorPolicy("A1-main", held_open_after=60.0, grant_window=10.0)


def ev(kind: Kind, now: float = 0.0, door: str = "A1-main", **kw: Any) -> AccessEvent:
    """An event received at monotonic ``now`` (wall ``WALL0 + now``)."""
    fields: dict[str, Any] = {"event_id": f"e-{kind}-{now}"} | kw
    if kind == "denied":
        fields.setdefault("reason", "unknown_credential")
    return AccessEvent.build(
        "term-1", door, kind, WALL0 + now, skew_limit=30.0, retention=86400, **fields
    )


def kinds(events: list[AccessEvent]) -> list[str]:
    return [e.kind for e in events]


# -- AccessEvent ------------------------------------------------------------------------------


def test_build_works_out_skew_data_class_and_retention() -> None:
    e = ev("granted", person="p1:abcd:00", credential="face", terminal_ts=WALL0 - 31.0)
    assert (e.skew, e.skew_flagged) == (-31.0, True)
    assert (e.data_class, e.retention) == ("personal", 86400)
    assert ev("granted", terminal_ts=WALL0 + 30.0).skew_flagged is False  # at the limit: fine
    plain = ev("door_opened")
    assert (plain.data_class, plain.retention, plain.skew, plain.skew_flagged) == (
        "operational",
        None,
        None,
        False,
    )
    snap = ev("denied", snapshot_ref="snap/1.jpg")
    assert (snap.data_class, snap.retention, snap.reason) == (
        "personal",
        86400,
        "unknown_credential",
    )
    assert ev("forced").alarming
    assert not ev("granted").alarming
    assert {"forced", "held_open", "tamper"} == ALARM_KINDS


BAD_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("unknown kind", {"kind": "opened"}),
    ("unknown credential", {"credential": "iris"}),
    ("reason on a grant", {"reason": "expired"}),
    ("denied without reason", {"kind": "denied"}),
    ("unknown reason", {"kind": "denied", "reason": "because"}),
    ("door event without door", {"door": ""}),
    ("person but operational", {"person": "p1:x:y"}),
    ("personal without retention", {"person": "p1:x:y", "data_class": "personal"}),
    ("retention on operational", {"retention": 60}),
    ("zero retention", {"person": "p1:x:y", "data_class": "personal", "retention": 0}),
    ("previous without current", {"person_previous": "p1:x:y"}),
    ("skew without terminal time", {"skew": 1.0}),
]


@pytest.mark.parametrize("change", [c[1] for c in BAD_EVENTS], ids=[c[0] for c in BAD_EVENTS])
def test_an_inconsistent_event_cannot_be_made(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {"device": "t", "door": "d", "kind": "granted", "gateway_ts": 1.0}
    with pytest.raises(ValueError, match="invalid AccessEvent"):
        AccessEvent(**(base | change))


def test_terminal_events_need_no_door() -> None:
    assert AccessEvent("t", "", "tamper", 1.0).door == ""
    assert AccessEvent("t", "", "terminal_offline", 1.0).data_class == "operational"


# -- DoorTracker ------------------------------------------------------------------------------


def test_an_opening_within_the_grant_window_is_fine() -> None:
    tracker = DoorTracker([DOOR])
    assert kinds(tracker.feed(ev("granted", 0.0), 0.0)) == ["granted"]
    assert kinds(tracker.feed(ev("door_opened", 10.0), 10.0)) == ["door_opened"]  # exactly at
    assert tracker.is_open("A1-main")
    assert kinds(tracker.feed(ev("door_closed", 12.0), 12.0)) == ["door_closed"]
    assert not tracker.is_open("A1-main")
    # the grant still runs for a second opening inside the window (the lock is still released)
    assert kinds(tracker.feed(ev("door_opened", 9.0), 9.0)) == ["door_opened"]


def test_an_opening_after_the_window_or_without_grant_is_forced() -> None:
    tracker = DoorTracker([DOOR])
    tracker.feed(ev("granted", 0.0), 0.0)
    opened = ev("door_opened", 10.001, terminal_ts=WALL0 + 15.0)
    out = tracker.feed(opened, 10.001)
    assert kinds(out) == ["door_opened", "forced"]
    forced = out[1]
    assert forced == dataclasses.replace(
        opened, kind="forced", event_id=f"{opened.event_id}/forced"
    )
    assert (forced.gateway_ts, forced.terminal_ts, forced.skew) == (
        opened.gateway_ts,
        opened.terminal_ts,
        opened.skew,
    )
    # a repeated "opened" while open decides nothing new
    assert kinds(tracker.feed(ev("door_opened", 11.0), 11.0)) == ["door_opened"]


def test_held_open_once_per_opening_at_exactly_the_limit() -> None:
    tracker = DoorTracker([DOOR])
    tracker.feed(ev("granted", 0.0), 0.0)
    tracker.feed(ev("door_opened", 5.0), 5.0)
    assert tracker.next_due() == 65.0
    assert tracker.tick(64.999) == []
    (held,) = tracker.tick(65.0)
    assert (held.kind, held.door, held.gateway_ts, held.event_id) == (
        "held_open",
        "A1-main",
        WALL0 + 65.0,
        "e-door_opened-5.0/held",
    )
    assert (held.terminal_ts, held.data_class) == (None, "operational")
    assert tracker.tick(500.0) == []  # once
    assert tracker.next_due() is None
    assert kinds(tracker.feed(ev("door_closed", 600.0), 600.0)) == ["door_closed"]
    assert tracker.tick(10_000.0) == []  # closed: nothing due
    tracker.feed(ev("granted", 700.0), 700.0)
    tracker.feed(ev("door_opened", 701.0), 701.0)
    assert kinds(tracker.tick(761.0)) == ["held_open"]  # a new opening, a new report


def test_one_forced_per_opening_whoever_noticed_first() -> None:
    tracker = DoorTracker([DOOR])
    assert kinds(tracker.feed(ev("door_opened", 0.0), 0.0)) == ["door_opened", "forced"]
    assert tracker.feed(ev("forced", 0.5), 0.5) == []  # the terminal's own report, later
    assert tracker.suppressed == 1
    tracker.feed(ev("door_closed", 1.0), 1.0)
    assert kinds(tracker.feed(ev("forced", 2.0), 2.0)) == ["forced"]  # terminal first
    assert kinds(tracker.feed(ev("door_opened", 2.1), 2.1)) == ["door_opened"]
    assert tracker.is_open("A1-main")
    assert tracker.suppressed == 1


def test_one_held_open_per_opening_whoever_noticed_first() -> None:
    tracker = DoorTracker([DOOR])
    tracker.feed(ev("granted", 0.0), 0.0)
    tracker.feed(ev("door_opened", 1.0), 1.0)
    assert kinds(tracker.feed(ev("held_open", 30.0), 30.0)) == ["held_open"]  # terminal's limit
    assert tracker.tick(61.0) == []
    tracker.feed(ev("door_closed", 62.0), 62.0)
    tracker.feed(ev("granted", 100.0), 100.0)
    tracker.feed(ev("door_opened", 100.0), 100.0)
    assert kinds(tracker.tick(160.0)) == ["held_open"]
    assert tracker.feed(ev("held_open", 170.0), 170.0) == []
    assert tracker.suppressed == 1
    # a terminal report of a door the tracker did not know was open opens it
    tracker.feed(ev("door_closed", 200.0), 200.0)
    assert kinds(tracker.feed(ev("held_open", 300.0), 300.0)) == ["held_open"]
    assert tracker.is_open("A1-main")


def test_authorise_and_restore_for_a_gateway_unlock() -> None:
    tracker = DoorTracker([DOOR])
    previous = tracker.authorise("A1-main", 0.0, 30.0)
    assert kinds(tracker.feed(ev("door_opened", 25.0), 25.0)) == ["door_opened"]
    tracker.feed(ev("door_closed", 26.0), 26.0)
    tracker.restore("A1-main", previous)  # the unlock was not confirmed after all
    assert kinds(tracker.feed(ev("door_opened", 27.0), 27.0)) == ["door_opened", "forced"]


def test_other_doors_and_other_kinds_pass_through() -> None:
    tracker = DoorTracker([DOOR])
    other = ev("door_opened", 0.0, door="B2-east")
    assert tracker.feed(other, 0.0) == [other]
    for kind in ("denied", "tamper"):
        assert kinds(tracker.feed(ev(kind, 1.0), 1.0)) == [kind]
    assert not tracker.is_open("A1-main")


FED: list[Kind] = ["granted", "denied", "door_opened", "door_closed", "forced", "held_open"]
steps = st.lists(
    st.tuples(st.sampled_from([*FED, None]), st.floats(0.0, 40.0)), max_size=40
)  # None: a tick


@settings(max_examples=500, deadline=None)
@given(steps=steps)
def test_any_sequence_reports_each_opening_at_most_once(
    steps: list[tuple[Kind | None, float]],
) -> None:
    tracker = DoorTracker([DOOR])
    now = 0.0
    per_opening: dict[str, int] = {"forced": 0, "held_open": 0}
    for what, gap in steps:
        now += gap
        out = tracker.tick(now) if what is None else tracker.feed(ev(what, now), now)
        assert all(e.data_class == "operational" for e in out)
        for e in out:
            if e.kind == "door_closed":
                per_opening = {"forced": 0, "held_open": 0}
            elif e.kind in per_opening:
                per_opening[e.kind] += 1
                assert per_opening[e.kind] == 1, f"two {e.kind} for one opening"
    assert all(e.gateway_ts <= WALL0 + now for e in tracker.tick(now))


# -- TerminalWatch ----------------------------------------------------------------------------


def test_a_terminal_never_heard_goes_offline_after_the_timeout_once() -> None:
    watch = TerminalWatch(["t1", "t2"], timeout=90.0, now=0.0, wall=WALL0)
    assert watch.online("t1") is None
    assert watch.tick(89.9) == []
    assert kinds(watch.heard("t2", 50.0, WALL0 + 50.0)) == ["terminal_online"]
    (off,) = watch.tick(90.0)
    assert (off.device, off.door, off.kind, off.gateway_ts) == (
        "t1",
        "",
        "terminal_offline",
        WALL0 + 90.0,
    )
    assert watch.tick(1000.0)[0].device == "t2"  # t2 went quiet at 50 + 90
    assert watch.tick(2000.0) == []
    assert (watch.online("t1"), watch.online("t2"), watch.online("nope")) == (False, False, None)


def test_heard_again_is_online_once_and_a_will_is_offline_at_once() -> None:
    watch = TerminalWatch(["t1"], timeout=90.0, now=0.0, wall=WALL0)
    assert kinds(watch.heard("t1", 1.0, WALL0 + 1.0)) == ["terminal_online"]
    assert watch.heard("t1", 2.0, WALL0 + 2.0) == []
    assert watch.tick(91.9) == []  # the last message pushed the deadline to 92
    assert watch.tick(92.0)[0].gateway_ts == WALL0 + 92.0
    assert kinds(watch.heard("t1", 100.0, WALL0 + 100.0)) == ["terminal_online"]
    assert kinds(watch.lost("t1", WALL0 + 101.0)) == ["terminal_offline"]
    assert watch.lost("t1", WALL0 + 102.0) == []
    assert watch.tick(10_000.0) == []
    assert watch.heard("unknown", 1.0, WALL0) == []
    assert watch.lost("unknown", WALL0) == []


def test_resume_gives_every_terminal_a_full_timeout() -> None:
    watch = TerminalWatch(["t1"], timeout=90.0, now=0.0, wall=WALL0)
    watch.heard("t1", 0.0, WALL0)
    watch.resume(500.0, WALL0 + 500.0)  # back from a broker outage
    assert watch.tick(589.0) == []
    assert watch.tick(590.0)[0].gateway_ts == WALL0 + 590.0


# -- pseudonyms -------------------------------------------------------------------------------

PSEUDONYM = re.compile(r"^p1:[0-9a-f]{4}:[0-9a-f]{32}$")


def test_the_pseudonym_is_the_documented_hmac() -> None:
    names = Pseudonymiser("site-1", KEY)
    digest = hmac.new(KEY, b"site-1\x00R-3-1201-02", hashlib.sha256).hexdigest()
    kid = hmac.new(KEY, b"cgw pseudonym key id", hashlib.sha256).hexdigest()[:4]
    assert names.pseudonym("R-3-1201-02") == f"p1:{kid}:{digest[:32]}"
    assert names.key_id == kid == key_id(KEY)
    assert names.previous_key_id is None


@given(raw=st.text(min_size=1, max_size=50))
def test_stable_per_site_and_unlinkable_across_sites(raw: str) -> None:
    here = Pseudonymiser("site-1", KEY).pseudonym(raw)
    assert PSEUDONYM.match(here)
    assert Pseudonymiser("site-1", KEY).pseudonym(raw) == here  # stable, also across restarts
    assert Pseudonymiser("site-2", KEY).pseudonym(raw) != here  # site in the input
    assert Pseudonymiser("site-1", OLD_KEY).pseudonym(raw) != here  # a key per site


def test_different_people_get_different_pseudonyms() -> None:
    names = Pseudonymiser("site-1", KEY)
    got = {names.pseudonym(f"{room:04d}") for room in range(2000)}  # a small id space
    assert len(got) == 2000


def test_rotation_emits_current_then_previous() -> None:
    old = Pseudonymiser("site-1", OLD_KEY)
    new = Pseudonymiser("site-1", KEY)
    rotating = Pseudonymiser("site-1", KEY, previous=OLD_KEY)
    assert rotating.pseudonyms("u-88231") == (new.pseudonym("u-88231"), old.pseudonym("u-88231"))
    assert rotating.pseudonym("u-88231") == new.pseudonym("u-88231")
    assert (rotating.key_id, rotating.previous_key_id) == (key_id(KEY), key_id(OLD_KEY))
    assert new.pseudonyms("u-88231") == (new.pseudonym("u-88231"),)
    with pytest.raises(ConfigError, match="same key"):
        Pseudonymiser("site-1", KEY, previous=KEY)


def test_the_raw_id_and_the_keys_stay_hidden() -> None:
    names = Pseudonymiser("site-1", KEY, previous=OLD_KEY)
    shown = repr(names)
    assert shown == (
        f"Pseudonymiser(site='site-1', key_id={key_id(KEY)!r}, previous={key_id(OLD_KEY)!r})"
    )
    assert KEY.hex() not in shown
    assert OLD_KEY.hex() not in shown
    assert not hasattr(names, "__dict__")  # slots only: nothing else is kept
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(names)
    with pytest.raises(ValueError, match="empty identifier"):
        names.pseudonym("")
    assert PSEUDONYM.match(names.pseudonym("\ud800"))  # a lone surrogate from JSON still works
    token = names.token("R-3-1201-02-evt", "event_id")
    assert re.fullmatch(r"t1:[0-9a-f]{4}:[0-9a-f]{32}", token)
    assert token == names.token("R-3-1201-02-evt", "event_id")
    assert token.split(":")[2] != names.pseudonym("R-3-1201-02-evt").split(":")[2]


@pytest.mark.parametrize("site", ["", "a\x00b"])
def test_a_bad_site_id_is_refused(site: str) -> None:
    with pytest.raises(ConfigError, match="site id"):
        Pseudonymiser(site, KEY)


# -- key files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        KEY.hex().encode() + b"\n",
        KEY.hex().upper().encode(),
        base64.b64encode(KEY) + b"\r\n",
        base64.urlsafe_b64encode(KEY).rstrip(b"="),
        KEY,  # raw bytes
    ],
    ids=["hex", "HEX", "base64", "base64url-unpadded", "raw"],
)
def test_key_forms_give_the_same_key(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(text)
    assert load_key(path) == KEY


def test_a_raw_key_keeps_its_trailing_newline() -> None:
    raw = bytes(range(128, 160)) + b"\n"
    assert decode_key(raw) == raw


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "0 bytes of key"),
        (bytes(range(128, 140)), "12 bytes of key"),
        (b"correct horse battery staple and more words", "a passphrase is not a key"),
        (KEY.hex()[:40].encode(), "a passphrase is not a key"),  # 20 bytes of hex
        (base64.b64encode(KEY[:24]), "a passphrase is not a key"),
        (bytes([0x80, 0x81]) * 32, "not random"),
        ((b"\xaa" * 31) + b"\xab", "not random"),
        (b"\x80" * 5000, "larger than"),
    ],
)
def test_weak_or_bad_keys_are_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_key(data, "pseudonym.key")
    (line,) = info.value.errors
    assert fragment in line
    assert line.startswith("pseudonym.key: ")
    assert "horse" not in line


def test_a_missing_key_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the key"):
        Pseudonymiser.from_files("site-1", tmp_path / "nope.key")
    (tmp_path / "k").write_bytes(KEY)
    (tmp_path / "old").write_bytes(OLD_KEY)
    names = Pseudonymiser.from_files("site-1", tmp_path / "k", tmp_path / "old")
    assert names.pseudonyms("x") == Pseudonymiser("site-1", KEY, OLD_KEY).pseudonyms("x")


def test_an_implausible_terminal_time_is_dropped_and_flagged() -> None:
    far = AccessEvent.build(
        "t", "d", "granted", 1000.0, skew_limit=30, retention=3600, terminal_ts=2.5e11
    )
    assert (far.terminal_ts, far.skew, far.skew_flagged) == (None, None, True)
    near = AccessEvent.build(
        "t", "d", "granted", 1000.0, skew_limit=30, retention=3600, terminal_ts=1010.0
    )
    assert (near.terminal_ts, near.skew, near.skew_flagged) == (1010.0, 10.0, False)
