"""Fixtures of the fault suite: the daemon as a process, killed if a test leaves it running."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A ``Daemon`` on ``tmp_path/gw.yaml``, not started."""
    d = Daemon(tmp_path / "gw.yaml", tmp_path / "gw.log")
    try:
        yield d
    finally:
        d.stop()
