"""Fault finding 13 and row F36: a store that cannot be written stops neither the alarm path
nor says nothing about why.

``cgw run`` runs inside its own mount namespace (``unshare -m``) where the store's folder is
bind-mounted read-only: the read-only flag stops root too, which ``chmod`` would not, and the
mount is gone with the process. The gateway says why in one CRITICAL line and runs on a
stand-in store in its runtime folder (``gateway.runtime.storage``): a button's alarm still
reaches the platform, a ``store_unavailable`` alarm tells staff, health says why. Where
mounting is impossible (no root, no mount namespaces) the tests are skipped with that reason.
"""

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.core.errors import StoreError
from gateway.store.db import Schema, open_db
from tests.e2e.test_operate import wait_health
from tests.faults.test_broker_return import PREFIX, press, raised
from tests.faults.test_broker_return import config as button_config
from tests.support.daemon import Daemon, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.subscriber import Recorder


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


def _gateway(daemon: Daemon, tmp_path: Path, store: Path, read_only: Path, broker: int) -> int:
    """``daemon`` set up to run with ``read_only`` read-only; returns its monitor's port."""
    monitor = free_port()
    doc = button_config(store, broker, broker) | {"monitor": {"port": monitor}}
    write_config(daemon.config, doc)
    daemon.wrap = functools.partial(_read_only, read_only)
    daemon.env = {"RUNTIME_DIRECTORY": str(tmp_path / "run")}
    (tmp_path / "run").mkdir()
    return monitor


async def _said_why(daemon: Daemon, store: Path, folder: Path) -> str:
    line = await daemon.wait_log("Running on a stand-in store")
    said = str(line["msg"])
    assert line["level"] == "CRITICAL"
    assert f"store {store} cannot be written" in said, said
    assert f"the file system holding {folder} is read-only" in said, said
    assert "remount it read-write, or set the store's path to a writable folder" in said
    return said


async def test_a_new_store_in_a_read_only_folder_runs_on_a_stand_in(
    tmp_path: Path, ro_folder: Path, daemon: Daemon, mosquitto: Mosquitto
) -> None:
    """The alarm path goes on: the button's alarm reaches the platform, staff and the platform
    are told about the store, health says why; nothing is written where the store should be."""
    store = ro_folder / "store.db"
    monitor = _gateway(daemon, tmp_path, store, ro_folder, mosquitto.port)
    async with Recorder(mosquitto.host, mosquitto.port, f"{PREFIX}/alarm/#") as rec:
        daemon.start()
        await _said_why(daemon, store, ro_folder)
        await daemon.wait_log("button topics on local broker")
        await press(mosquitto.port, "e-1")
        await rec.wait_for(lambda _: len(raised(rec)) == 2)
        doc = await wait_health(
            f"http://127.0.0.1:{monitor}", lambda _, d: "store" in d["components"]
        )
        rc, _ = daemon.terminate()
    assert rc == 0
    rules = sorted(a["rule"] for a in raised(rec))
    assert rules == ["sos", "store_unavailable"]
    warning = next(a for a in raised(rec) if a["rule"] == "store_unavailable")
    assert (warning["kind"], warning["severity"], warning["device"]) == (
        "offline",
        "warning",
        "gw1",
    )
    assert doc["status"] == "degraded"
    detail = doc["components"]["store"]["detail"]
    assert f"{store} cannot be written" in detail, detail
    assert f"running on the stand-in {tmp_path / 'run'}" in detail, detail
    assert not store.exists()
    assert list((tmp_path / "run").glob("cgw-stand-in-s1-gw1.db"))


async def test_an_existing_store_on_a_read_only_file_system_is_left_as_it_is(
    tmp_path: Path, ro_folder: Path, daemon: Daemon, mosquitto: Mosquitto
) -> None:
    store = ro_folder / "store.db"
    schema = Schema("store", (lambda c: None,))
    open_db(store, schema, needs_check=lambda c: False).conn.close()
    before = store.read_bytes()
    _gateway(daemon, tmp_path, store, ro_folder, mosquitto.port)
    daemon.start()
    await _said_why(daemon, store, ro_folder)
    rc, _ = daemon.terminate()
    assert rc == 0
    assert store.read_bytes() == before


async def test_a_store_folder_to_create_on_a_read_only_file_system(
    tmp_path: Path, ro_folder: Path, daemon: Daemon, mosquitto: Mosquitto
) -> None:
    store = ro_folder / "sub" / "store.db"
    _gateway(daemon, tmp_path, store, ro_folder, mosquitto.port)
    daemon.start()
    await _said_why(daemon, store, ro_folder)
    rc, _ = daemon.terminate()
    assert rc == 0
    assert not store.parent.exists()


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
