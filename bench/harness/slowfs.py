"""The SD-card model: every ``fsync``/``fdatasync`` of one process made slower by a fixed delay.

A Raspberry Pi's SD card takes 10-30 ms per flush where a laptop's SSD takes well under one;
SQLite with ``synchronous=FULL`` flushes on every commit, so the card, not the CPU, sets how
fast alarms can be committed. ``preload(delay_ms, folder)`` compiles a small ``LD_PRELOAD``
library (with the system's C compiler) that sleeps ``delay_ms`` before calling the real
function, and returns the environment that loads it into a child process. Nothing else is
changed: the file system, SQLite and the gateway are the real ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

static void slow(void) {
    static long us = -1;
    if (us < 0) {
        const char *v = getenv("CGW_FSYNC_DELAY_US");
        us = v ? atol(v) : 0;
    }
    if (us > 0) {
        struct timespec t = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&t, NULL);
    }
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    slow();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    slow();
    return real(fd);
}
"""


def preload(delay_ms: float, folder: Path) -> dict[str, str]:
    """The environment of a child whose every flush takes ``delay_ms`` longer.

    Raises ``SystemExit`` with the reason when no C compiler is installed.
    """
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("--fsync-delay needs a C compiler (apt-get install gcc)")
    src, lib = folder / "slowfsync.c", folder / "slowfsync.so"
    src.write_text(SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"], check=True)
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{lib} {env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(lib)
    env["CGW_FSYNC_DELAY_US"] = str(round(delay_ms * 1000))
    return env
