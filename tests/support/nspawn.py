"""A Debian bookworm system booted with ``systemd-nspawn``: systemd as PID 1, for install tests.

``cached_root()`` builds the root once with ``debootstrap --variant=minbase`` into
``/var/cache/cgw-test-root/root-<key>/root`` (the key hashes suite, mirror and package list) and
reuses it on every later run; ``wheelhouse()`` does the same for the project's dependencies as
wheels (keyed by the dependency list), so that ``pip`` inside the container needs no network.
An entry is renamed into place once complete, under a lock: concurrent runs build it once, and
an interrupted build is redone. ``CGW_TEST_ROOT_CACHE`` puts the cache elsewhere.

``Container`` boots that root without changing it: an overlay (the cached root below, a fresh
upper directory per run) is its ``/``. It has its own network namespace (``--private-network``:
its loopback brokers never meet the host's) and the caller's host directories mounted
read-only (the test's: the checkout and the wheels). Commands run inside with ``nsenter`` into
all its namespaces, as root, with a clean environment. ``stop()`` powers it off, kills it if
it does not go within its deadline, unmounts the overlay and removes the run's directory; it is
safe to call twice.
Each container runs in a cgroup of its own below this process's, so two runs do not share one.

Why not ``machinectl`` or ``systemd-run --machine``: both need systemd on the host, and CI
machines and sandboxes often run without it. ``--keep-unit --register=no`` keep nspawn away
from the host's systemd as well.

Errors: ``Unavailable`` when the root or the wheels cannot be made here (no mirror, no PyPI);
tests skip with its message. Anything else is a failure.
"""

import fcntl
import hashlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

CACHE = Path(os.environ.get("CGW_TEST_ROOT_CACHE", "/var/cache/cgw-test-root"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# systemd as init, the bus systemctl speaks over, what install.sh installs when missing, and the
# tools the test types (setpriv is in util-linux, part of every root)
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "mosquitto",
    "mosquitto-clients",
    "openssl",
    "procps",
)
# a clean environment inside, as root's login would have it
ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
       "LANG=C.UTF-8")  # fmt: skip
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class Unavailable(Exception):
    """The root or the wheels cannot be made on this machine; the message says why."""


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds of one cache entry between concurrent test runs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _reachable(url: str) -> str | None:
    """None if ``url`` answers, else the reason it does not."""
    try:
        with urllib.request.urlopen(url, timeout=15):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return str(exc)


def cached_root() -> Path:
    """The bookworm root with ``PACKAGES``, built on the first call and kept for later runs."""
    key = hashlib.sha256(f"{SUITE} {MIRROR} {' '.join(sorted(PACKAGES))}".encode()).hexdigest()
    entry = CACHE / f"root-{key[:16]}"
    root = entry / "root"
    with _locked(entry.name):
        if root.is_dir():
            return root
        release = f"{MIRROR}/dists/{SUITE}/Release"
        if (why := _reachable(release)) is not None:
            raise Unavailable(f"the Debian mirror cannot be reached ({release}: {why})")
        shutil.rmtree(entry, ignore_errors=True)
        building = entry / "building"
        building.mkdir(parents=True)
        include = f"--include={','.join(PACKAGES)}"
        _check(["debootstrap", "--variant=minbase", include, SUITE, str(building), MIRROR], 900)
        building.rename(root)  # complete or absent: an interrupted build is redone
    return root


def wheelhouse(root: Path, repo: Path) -> Path:
    """Wheels of the project's dependencies and build backend, for ``pip --no-index``.

    Built by this host's pip (it knows the host's index, proxy and certificates), so the root's
    Python, which install.sh's venv gets, must be this one's version.
    """
    ours = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (root / "usr" / "lib" / ours).is_dir():
        raise Unavailable(f"the wheels are built by this {ours}, but {SUITE} has another Python")
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]
    key = hashlib.sha256(f"{ours} {' '.join(wanted)}".encode()).hexdigest()
    entry = CACHE / f"wheels-{key[:16]}"
    with _locked(entry.name):
        if entry.is_dir():
            return entry
        if (why := _reachable("https://pypi.org/simple/")) is not None:
            raise Unavailable(f"PyPI cannot be reached for the project's wheels: {why}")
        building = Path(tempfile.mkdtemp(dir=CACHE, prefix=".wheels-"))
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
        try:
            _check([*pip, "--wheel-dir", str(building), *wanted], 600)
        except AssertionError:
            shutil.rmtree(building, ignore_errors=True)
            raise
        building.rename(entry)
    return entry


def _check(args: list[str], timeout: float) -> None:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{args[0]} exited {result.returncode}:\n{result.stdout[-3000:]}"
                             f"{result.stderr[-3000:]}")  # fmt: skip


def _own_cgroups(name: str) -> list[Path]:
    """A new child of this process's cgroup in the hierarchies nspawn uses (cgroup v2 and, on
    a hybrid host, name=systemd); those it cannot make are left out.

    With --keep-unit nspawn puts the container in <its own cgroup>/payload: a cgroup of its own
    per container keeps two runs from the same shell (or CI job) apart.
    """
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        if len(fields) != 2:
            continue
        point, fstype, options = line.split()[4], fields[1].split()[0], fields[1].split()[-1]
        if fstype == "cgroup2":
            mounts.setdefault("", Path(point))
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts.setdefault("name=systemd", Path(point))
    made = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            group = mounts.pop(controllers) / path.lstrip("/") / name
            with suppress(OSError):
                group.mkdir()
                made.append(group)
    return made


def _in_cgroups(groups: list[Path], *args: str) -> list[str]:
    """``args`` as a command that first moves itself into ``groups``."""
    enter = "".join(f'echo "$$" > {group}/cgroup.procs && ' for group in groups)
    return ["sh", "-c", f'{enter}exec "$@"', "sh", *args]


def _remove_cgroups(groups: list[Path]) -> None:
    """Remove ``groups`` and what nspawn made in them, the deepest first (all empty by now)."""
    for group in groups:
        for sub in sorted(group.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            with suppress(OSError):
                sub.rmdir()


LINE_TIMEOUT = 60.0


def _lines(proc: "subprocess.Popen[str]", what: str) -> Iterator[str]:
    """The lines ``proc`` prints; fails if none comes within ``LINE_TIMEOUT`` of the previous."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            if not sel.select(LINE_TIMEOUT):
                raise AssertionError(f"no output within {LINE_TIMEOUT:.0f} s")
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"{what} exited {proc.wait(STOP_TIMEOUT)}")
            yield line.rstrip("\n")


class Container:
    """One booted container on an overlay of ``root``; see the module docstring."""

    def __init__(self, root: Path, binds: Sequence[tuple[Path, str]]) -> None:
        self.root = root
        self.binds = binds
        self.workdir = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="cgw-nspawn-"))
        self.merged = self.workdir / "merged"
        self.log = self.workdir / "console.log"
        self.name = f"cgw-test-{os.getpid()}"
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0  # the container's PID 1, as the host sees it
        self.cgroups: list[Path] = []

    def start(self) -> None:
        """Mount the overlay, boot, and wait until systemd inside has finished starting up."""
        for sub in ("upper", "work", "merged"):
            (self.workdir / sub).mkdir()
        work = self.workdir
        options = f"lowerdir={self.root},upperdir={work / 'upper'},workdir={work / 'work'}"
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(self.merged)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        binds = [f"--bind-ro={host}:{inside}" for host, inside in self.binds]
        self.cgroups = _own_cgroups(self.name)
        with self.log.open("wb") as log:
            self._nspawn = subprocess.Popen(
                _in_cgroups(self.cgroups, "systemd-nspawn", "--boot", "--keep-unit",
                            "--register=no", "--private-network", f"--machine={self.name}",
                            f"--directory={self.merged}", *binds),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + BOOT_TIMEOUT
        self.leader = self._wait_for_leader(deadline)
        while True:  # the bus may not answer yet: ask again until the deadline
            state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=30)
            if state.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the container did not boot: {state.stdout}{self.console()}")
            time.sleep(0.2)

    def _wait_for_leader(self, deadline: float) -> int:
        assert self._nspawn is not None
        children = Path(f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children")
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise AssertionError(
                    f"systemd-nspawn exited {self._nspawn.returncode}:\n{self.console()}"
                )
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            time.sleep(0.05)
        raise AssertionError(f"the container's init did not start:\n{self.console()}")

    def console(self) -> str:
        """What systemd-nspawn and the container's init printed so far (the tail)."""
        return self.log.read_text(errors="replace")[-4000:]

    def command(self, *args: str) -> list[str]:
        """``args`` as a command line that runs inside, as root, with a clean environment."""
        return ["nsenter", f"--target={self.leader}", "--all", "env", "-i", *ENV, *args]

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside and wait for it; with ``check``, a non-zero exit fails."""
        result = subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def sh(self, script: str, input: str | None = None, check: bool = True) -> str:
        """Run a shell script inside (as an installer types it); its stdout."""
        return self.run("sh", "-ec", script, input=input, check=check).stdout

    @contextmanager
    def spawn(self, *args: str) -> Iterator[Iterator[str]]:
        """Start a command inside without waiting; the lines it prints, each due within
        ``LINE_TIMEOUT``. Killed (by its PID inside) when the block ends."""
        # nsenter forks the command into the container's PID namespace and cannot take it down
        # (util-linux 2.38 has no --kill-child), so the command says its PID inside first
        proc = subprocess.Popen(
            self.command("sh", "-c", 'echo "$$"; exec "$@"', "sh", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        lines = _lines(proc, args[0])
        pid = ""
        try:
            pid = next(lines)
            yield lines
        finally:
            if pid:
                self.run("kill", pid, check=False)
            else:  # it never started: nsenter itself still waits
                proc.kill()
            proc.wait(STOP_TIMEOUT)
            assert proc.stdout is not None
            proc.stdout.close()

    def stop(self) -> None:
        """Power off (kill after ``STOP_TIMEOUT``), unmount, remove the run's files."""
        nspawn, self._nspawn = self._nspawn, None
        if nspawn is not None and nspawn.poll() is None:
            nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container's init to halt
            try:
                nspawn.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                if self.leader:  # PID 1 gone: the kernel kills the rest of the namespace
                    os.kill(self.leader, signal.SIGKILL)
                nspawn.kill()
                nspawn.wait(STOP_TIMEOUT)
        if os.path.ismount(self.merged):
            subprocess.run(["umount", str(self.merged)], check=True, timeout=30)
        shutil.rmtree(self.workdir, ignore_errors=True)
        _remove_cgroups(self.cgroups)
