"""Fault finding 13: a store on a read-only file system says why the gateway cannot start.

``cgw run`` runs inside its own mount namespace (``unshare -m``) where the store's folder is
bind-mounted read-only: the read-only flag stops root too, which ``chmod`` would not, and the
mount is gone with the process. Where mounting is impossible (no root, no mount namespaces)
the tests are skipped with that reason.
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.core.errors import StoreError
from gateway.store.db import Schema, open_db
from tests.support.daemon import REPO, gateway_config, write_config
from tests.support.ports import free_port

EXIT_FAILURE = 1


def _read_only(folder: Path, command: list[str]) -> list[str]:
    """``command`` in a mount namespace of its own where ``folder`` is read-only."""
    d = shlex.quote(str(folder))
    script = f"mount --bind {d} {d} && mount -o remount,ro,bind {d} && exec {shlex.join(command)}"
    return ["unshare", "-m", "sh", "-c", script]


def _mounting_works(tmp: Path) -> str | None:
    """None if a read-only bind mount can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = tmp / "probe"
    probe.mkdir()
    done = subprocess.run(
        _read_only(probe, ["sh", "-c", f"! touch {shlex.quote(str(probe / 'x'))} 2>/dev/null"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"cannot make a read-only bind mount here: {done.stderr.strip() or done.returncode}"
    return None


@pytest.fixture
def ro_folder(tmp_path: Path) -> Path:
    why = _mounting_works(tmp_path)
    if why is not None:
        pytest.skip(why)
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def _run_gateway(tmp_path: Path, store: Path, read_only: Path) -> subprocess.CompletedProcess[str]:
    config = write_config(
        tmp_path / "gateway.yaml", gateway_config(store, free_port(), free_port(), [1])
    )
    command = [sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-format", "text"]
    return subprocess.run(
        _read_only(read_only, command),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def _said_why(stderr: str, store: Path, folder: Path) -> None:
    assert f"cannot open store {store}" in stderr or f"folder of store {store}" in stderr, stderr
    assert f"the file system holding {folder} is read-only" in stderr, stderr
    assert "remount it read-write, or set the store's path to a writable folder" in stderr


def test_a_new_store_in_a_read_only_folder(tmp_path: Path, ro_folder: Path) -> None:
    store = ro_folder / "store.db"
    done = _run_gateway(tmp_path, store, ro_folder)
    assert done.returncode == EXIT_FAILURE, done.stderr
    _said_why(done.stderr, store, ro_folder)
    assert not store.exists()


def test_an_existing_store_on_a_read_only_file_system(tmp_path: Path, ro_folder: Path) -> None:
    store = ro_folder / "store.db"
    schema = Schema("store", (lambda c: None,))
    open_db(store, schema, needs_check=lambda c: False).conn.close()
    before = store.read_bytes()
    done = _run_gateway(tmp_path, store, ro_folder)
    assert done.returncode == EXIT_FAILURE, done.stderr
    _said_why(done.stderr, store, ro_folder)
    assert store.read_bytes() == before


def test_a_store_folder_to_create_on_a_read_only_file_system(
    tmp_path: Path, ro_folder: Path
) -> None:
    store = ro_folder / "sub" / "store.db"
    done = _run_gateway(tmp_path, store, ro_folder)
    assert done.returncode == EXIT_FAILURE, done.stderr
    _said_why(done.stderr, store, ro_folder)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes whatever the modes say; the mounts above stop root"
)
def test_a_folder_this_user_may_not_write(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o555)
    store = folder / "store.db"
    with pytest.raises(StoreError) as caught:
        open_db(store, Schema("store", (lambda c: None,)), needs_check=lambda c: False)
    assert f"the folder {folder} is not writable by this user" in str(caught.value)
