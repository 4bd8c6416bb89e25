"""The clock-sync flag: either source is enough, the answer is cached, a broken libc is 'no'."""

import ctypes.util
from pathlib import Path

import pytest

from gateway.core import timesync
from gateway.core.clock import ManualClock
from gateway.core.timesync import SyncState, kernel_synced


def test_the_timesyncd_marker_alone_means_synced(tmp_path: Path) -> None:
    marker = tmp_path / "synchronized"
    marker.touch()
    assert SyncState(ManualClock(), marker=marker, kernel=lambda: False)() is True


def test_the_kernel_alone_means_synced(tmp_path: Path) -> None:
    state = SyncState(ManualClock(), marker=tmp_path / "absent", kernel=lambda: True)
    assert state() is True


def test_neither_source_means_unsynced(tmp_path: Path) -> None:
    state = SyncState(ManualClock(), marker=tmp_path / "absent", kernel=lambda: False)
    assert state() is False


def test_the_answer_is_cached_for_ttl_seconds(tmp_path: Path) -> None:
    clock = ManualClock()
    marker = tmp_path / "synchronized"
    asked: list[float] = []

    def kernel() -> bool:
        asked.append(clock.mono())
        return False

    state = SyncState(clock, ttl=30.0, marker=marker, kernel=kernel)
    assert state() is False
    marker.touch()  # timesyncd synchronised meanwhile
    clock.advance(29.9)
    assert state() is False
    assert len(asked) == 1
    clock.advance(0.1)
    assert state() is True
    marker.unlink()
    clock.advance(30.0)
    assert state() is False
    assert len(asked) == 2


def test_kernel_synced_reads_adjtimex_without_raising() -> None:
    assert isinstance(kernel_synced(), bool)


def test_kernel_synced_is_false_when_libc_cannot_be_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc-that-is-not-here.so.9")
    assert timesync.kernel_synced() is False
