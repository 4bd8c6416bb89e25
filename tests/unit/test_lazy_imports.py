"""Heavy libraries load only when the feature that needs them is configured.

A gateway without a command channel, an InfluxDB sink, staff channels, HTTP devices, terminal
records or a web listener must not pay their RSS (cryptography and PyJWT alone are 8 MiB,
aiohttp 11 MiB): the Pi has other work to do.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("cryptography", "jwt", "influxdb_client", "apprise", "aiohttp")


def test_the_runtime_and_the_cli_load_no_heavy_library_on_import() -> None:
    code = (
        "import sys, gateway.runtime.root, gateway.cli.main;"
        f" print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
