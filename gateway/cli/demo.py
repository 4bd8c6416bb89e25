"""``cgw demo``: the gateway's main job on embedded defaults, watched live.

It starts a loopback Mosquitto from ``gateway/demo/mosquitto.conf`` on a free port (or uses the
broker on ``--port``), an in-process Modbus TCP simulator serving the shipped sensor profiles
with drifting values, and the gateway itself with a temporary store, its local alarm API, its
field console (two demo accounts, the password printed) and its monitor; then it prints what
reaches the upstream broker. Its config is written next to the store, and the README's
commands are printed with its ``-c``, so each can be tried while the demo runs. A scripted
resident presses the lobby button and a scripted guard acknowledges the alarm with ``cgw alarms
ack``, through the local API. Ctrl-C (or ``--duration``) stops everything and removes the
temporary files.
"""

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from gateway.config import validate
from gateway.config.loader import BUILTIN_PROFILES
from gateway.console.users import Role, Users
from gateway.demo.sim import SimulatedDevice, Simulator
from gateway.ops.logs import setup
from gateway.runtime.root import Runtime

Cli = Callable[[list[str]], int]  # ``cgw``'s entry point: arguments in, exit code out
DEMO_CONF = resources.files("gateway.demo") / "mosquitto.conf"  # package data, like the profiles
DEMO_PASSWORD = "demo-" + secrets.token_hex(3)  # new each run: the demo's console is loopback
DEMO_USERS: list[tuple[str, Role, str]] = [
    ("demo", "admin", "Demo"),
    ("guard", "guard", "Guard Wang"),
]
DEVICES = [  # (device id, profile, unit id)
    ("th-1", "th-rs485", 1),
    ("pm-1", "pm-laser-rs485", 2),
    ("noise-1", "noise-rs485", 3),
    ("station-1", "env-station-rs485", 4),
]


def run_demo(duration: float | None, port: int | None, cgw: Cli) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; 0 on a clean stop, 1 if it cannot.

    ``cgw`` is the CLI's entry point (``gateway.cli.main.main``): the scripted guard
    acknowledges the alarm through it, as a person would type it.
    """
    setup("WARNING", json_lines=False)
    port = _free_port() if port is None else port
    with tempfile.TemporaryDirectory(prefix="cgw-demo-") as tmp:
        broker = None if _listening(port) else _start_broker(Path(tmp), port)
        refused: BaseException | None = None
        try:
            asyncio.run(_demo(Path(tmp), port, duration, cgw))
        except* aiomqtt.MqttError as group:
            # e.g. an installed gateway's broker, which wants a login: one line, no traceback
            refused = group.exceptions[0]
        finally:
            if broker is not None:
                broker.terminate()
                broker.wait(5)
    if refused is not None:
        print(
            f"cgw demo: the broker on 127.0.0.1:{port} refused the demo ({refused}); run"
            " 'cgw demo' without --port to let it start a broker of its own",
            file=sys.stderr,
        )
        return 1
    return 0


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(count: int, avoid: int | None = None) -> list[int]:
    """``count`` distinct free loopback ports, none equal to ``avoid``.

    The sockets stay bound until all are picked: two ports picked one after the other can be the
    same one, since the kernel hands a port back as soon as its socket closes.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            if port != avoid:
                ports.append(port)
        return ports


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start_broker(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = tmp / "mosquitto.conf"
    conf.write_text(DEMO_CONF.read_text().replace("listener 1883 ", f"listener {port} "))
    # A session of its own: Ctrl-C reaches the demo, which stops the broker last.
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 5
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
            proc.kill()
            raise SystemExit(f"could not start mosquitto on 127.0.0.1:{port}: {err.strip()}")
        time.sleep(0.05)
    print(f"started a loopback mosquitto on 127.0.0.1:{port} ({DEMO_CONF.name})")
    return proc


def _config(tmp: Path, broker: int, modbus: int) -> dict[str, Any]:
    token = tmp / "api-token"
    token.write_text(secrets.token_hex(16) + "\n")
    token.chmod(0o600)
    api, monitor, console = _free_ports(3, avoid=broker)
    users = Users.load(tmp / "users.yaml")
    for name, role, display in DEMO_USERS:
        users.add(name, role, DEMO_PASSWORD, display)
    users.save(tmp / "users.yaml")
    return {
        "gateway": {"site_id": "demo-site", "gateway_id": "gw-demo"},
        "api": {"host": "127.0.0.1", "port": api, "token_file": str(token)},
        "console": {"host": "127.0.0.1", "port": console, "users_file": str(tmp / "users.yaml")},
        "monitor": {"host": "127.0.0.1", "port": monitor},
        "store": {"path": str(tmp / "buffer.db"), "quota": "16MiB", "reserve": "1MiB"},
        "upstream": {"mqtt": {"host": "127.0.0.1", "port": broker, "topic_root": "cgw"}},
        "buses": [
            {
                "id": "rs485-1",
                "kind": "modbus_tcp",
                "host": "127.0.0.1",
                "port": modbus,
                "timeout": 0.5,
                "retries": 1,
            }
        ],
        "local_broker": {"host": "127.0.0.1", "port": broker},
        "alarms": {
            "rules": [
                {"kind": "contact", "id": "sos", "device": "lobby-sos", "type": "emergency"},
                {
                    "kind": "threshold",
                    "id": "pm25-high",
                    "point": "pm25",
                    "limit": 75,
                    "clear": 60,
                    "for_s": 10,
                    "clear_for_s": 10,
                },
            ]
        },
        "devices": [
            {
                "kind": "mqtt_button",
                "id": "lobby-sos",
                "topic": "demo/lobby/sos",
                "profile": "sos-state-json",
            },
            *(
                {
                    "kind": "modbus",
                    "id": dev,
                    "bus": "rs485-1",
                    "unit_id": unit,
                    "profile": profile,
                    "interval": 2,
                }
                for dev, profile, unit in DEVICES
            ),
        ],
    }


async def _demo(tmp: Path, broker: int, duration: float | None, cgw: Cli) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    devices = [
        SimulatedDevice.from_profile(unit, BUILTIN_PROFILES / f"{profile}.yaml")
        for _, profile, unit in DEVICES
    ]
    async with Simulator(devices, port=0, interval=1.0) as sim:
        doc = _config(tmp, broker, sim.port)
        path = tmp / "gateway.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        cfg = validate(doc, tmp)
        print(
            f"Modbus simulator on 127.0.0.1:{sim.port}: {len(devices)} sensors;"
            f" gateway publishing to 127.0.0.1:{broker} under cgw/demo-site/gw-demo/#"
        )
        _print_commands(path, doc)
        print("Ctrl-C to stop.\n")
        runtime = Runtime(cfg)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_watch(broker, stop), name="demo:watch")
            script = tg.create_task(_emergency(broker, runtime, path, cgw), name="demo:emergency")
            await runtime.run(stop)
            script.cancel()


def _print_commands(path: Path, doc: dict[str, Any]) -> None:
    monitor = f"http://127.0.0.1:{doc['monitor']['port']}"
    console = f"http://127.0.0.1:{doc['console']['port']}"
    print(f"Field console: {console} (sign in as demo / {DEMO_PASSWORD}, an administrator;")
    print(f"  or as guard / {DEMO_PASSWORD} to see what a guard sees)")
    print(f"Its config is {path}; while it runs, try in another terminal:")
    for line in (
        f"cgw status -c {path}",
        f"cgw alarms list -c {path}",
        f"cgw alarms ack <alarm id> --by <your name> -c {path}",
        f"cgw check-config {path}",
        f"curl -s {monitor}/health",
        f"curl -s {monitor}/metrics | grep '^cgw_'",
    ):
        print(f"  {line}")


async def _emergency(port: int, runtime: Runtime, config: Path, cgw: Cli) -> None:
    """A resident presses the lobby call button; a guard acknowledges it a little later."""
    await runtime.ready.wait()
    await asyncio.sleep(5)
    print("\n>>> a resident presses the emergency button in the lobby\n")
    async with aiomqtt.Client("127.0.0.1", port, identifier="demo-lobby-button") as button:
        press = {"id": "demo-press-1", "evt": "sos", "state": "pressed"}
        await button.publish("demo/lobby/sos", json.dumps(press).encode(), qos=1)
    await asyncio.sleep(4)
    for alarm in runtime.alarms.open_alarms():
        command = ["alarms", "ack", alarm.id, "--by", "guard-wang", "-c", str(config)]
        print(f"\n>>> the guard acknowledges it: cgw {' '.join(command)}\n")
        await asyncio.to_thread(cgw, command)


async def _watch(port: int, stop: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="cgw-demo-viewer") as client:
        await client.subscribe("cgw/demo-site/gw-demo/#", qos=1)
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
            print(_line(str(msg.topic), payload))
            sys.stdout.flush()
            if stop.is_set():
                return


def _line(topic: str, payload: bytes) -> str:
    suffix = topic.split("/", 3)[-1]
    with contextlib.suppress(ValueError):
        msg = json.loads(payload)
        clock = msg.get("ts", "")[11:19]
        if "points" in msg:
            values = "  ".join(
                f"{p['name']}={p['value']}{_unit(p['unit'])}"
                + ("" if p["quality"] == "good" else f"({p['quality']})")
                for p in msg["points"]
            )
            return f"{clock} #{msg['seq']:<5} {msg['device']:<10} {values}"
        if "alarm_id" in msg:
            took = msg["time_to_ack_s"]
            after = f" after {took:.1f} s" if took is not None else ""
            return (
                f"{clock} ALARM  {msg['device']:<10} {msg['severity'].upper()}:"
                f" {msg['message']} -> {msg['state'].upper()}{after}"
            )
        if "state" in msg:
            who = msg.get("device", "gateway")
            return f"{clock} {'':6} {who:<10} is {msg['state'].upper()}"
    return f"{suffix}: {payload[:200]!r}"


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""
