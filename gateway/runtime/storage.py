"""Opening the store, and what the gateway runs on when the configured one cannot be written.

Contract:
- ``open_store(cfg)`` opens the configured store. If it cannot be written (a read-only file
  system, a folder or file this user may not write: ``gateway.store.db.unwritable``), the
  gateway does not stop: the alarm path (sirens, staff notifications, the platform) matters
  more than the buffer. It opens a stand-in store in the runtime folder instead (systemd's
  ``RUNTIME_DIRECTORY``, a tmpfs; the system's temporary folder elsewhere) and returns why.
  A restart within the same boot finds the same stand-in file again, so nothing it holds is
  lost by a crash loop; a reboot loses it. Every other error still stops the gateway.
- ``stand_in_condition`` is the alarm that tells staff and the platform about it: kind
  ``offline``, rule ``store_unavailable``, severity ``warning``, on the first ladder, raised
  once per start while the stand-in is in use.
"""

import logging
import os
import tempfile
from pathlib import Path

from gateway.alarms.model import Condition
from gateway.alarms.wording import STORE_UNAVAILABLE
from gateway.config.models import Config
from gateway.core.errors import StoreError
from gateway.core.messages import Lane
from gateway.sinks.mqtt import MqttSink
from gateway.store.db import unwritable
from gateway.store.outbox import Store

log = logging.getLogger(__name__)

STAND_IN_QUOTA = 16 * 1024**2  # bytes at most: the stand-in lives in memory (a tmpfs)


def stand_in_path(cfg: Config) -> Path:
    """Where the stand-in store lives: the runtime folder, one file per gateway."""
    folder = Path(os.environ.get("RUNTIME_DIRECTORY") or tempfile.gettempdir())
    return folder / f"cgw-stand-in-{cfg.gateway.site_id}-{cfg.gateway.gateway_id}.db"


async def open_store(cfg: Config) -> tuple[Store, str]:
    """The store to run on, and "" or why the configured one is not it."""
    sinks = [MqttSink.name] + (["influx"] if cfg.upstream.influx is not None else [])
    lanes = {"influx": [Lane.TELEMETRY]}  # alarms and events go to MQTT only
    quota, reserve = int(cfg.store.quota), int(cfg.store.reserve)
    try:
        store = await Store.open(
            cfg.store.path, quota=quota, reserve=reserve, sinks=sinks, lanes=lanes
        )
        return store, ""
    except StoreError as exc:
        why = unwritable(cfg.store.path, "store")
        if why is None:
            raise
        error = exc
    path = stand_in_path(cfg)
    try:
        store = await Store.open(
            path,
            quota=min(quota, STAND_IN_QUOTA),
            reserve=min(reserve, STAND_IN_QUOTA // 8),
            sinks=sinks,
            lanes=lanes,
        )
    except StoreError as again:
        raise StoreError(f"{error}; the stand-in {path} failed too: {again}") from again
    log.critical(
        "store %s cannot be written: %s. Running on a stand-in store %s until the gateway is"
        " restarted with the store fixed: alarms, sirens and staff notifications go on, but"
        " what the stand-in holds is lost at a reboot",
        cfg.store.path,
        why,
        path,
    )
    return store, f"{cfg.store.path} cannot be written: {why}"


def stand_in_condition(cfg: Config, why: str, ts: float) -> Condition:
    """The alarm that says the gateway runs on a stand-in store."""
    gateway = cfg.gateway.gateway_id
    return Condition(
        f"{STORE_UNAVAILABLE}/{gateway}",
        STORE_UNAVAILABLE,
        "offline",
        gateway,
        True,
        "warning",
        False,
        cfg.alarms.ladders[0].id if cfg.alarms.ladders else "default",
        f"the gateway's store is not writable, running on a stand-in in memory: {why}",
        ts,
    )
