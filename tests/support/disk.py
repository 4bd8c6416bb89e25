"""A small disk for the store: a tmpfs the test mounts (as root), and a ballast that fills it.

``small_disk`` is a pytest fixture: a 4 MiB tmpfs under ``tmp_path``, unmounted afterwards;
where mounting is impossible (no root, no mount permission) the test is skipped with the reason.
``ballast(folder)`` takes every free byte of the file system holding ``folder``, as a log or
another program would, and returns the file to delete to give the room back.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["ballast", "small_disk"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def ballast(folder: Path) -> Path:
    """Take every free byte of the file system holding ``folder``."""
    path = folder / "ballast"
    with path.open("wb", buffering=0) as f:
        for block in (65536, 4096, 512):  # big blocks, then what is left
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * block)
    assert os.statvfs(folder).f_bavail == 0
    return path
