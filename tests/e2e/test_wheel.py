"""Installed from its wheel, as a distribution package would install it, the gateway finds its own
files: the wheel holds every data file of the packages, and the installed ``cgw`` checks the
annotated example and runs the demo from a fresh virtualenv, away from the source tree.

The wheel is built with ``pip wheel`` from a copy of the project's own files (so no build output
lands in the source tree) and installed with the test environment's pip into a venv under a
temporary folder; pip's cache makes both quick.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "drivers")
SOURCES = ("pyproject.toml", "README.md", *PACKAGES)
BUILD_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@dataclass(frozen=True, slots=True)
class Installed:
    """The wheel that was built, and the venv it was installed into."""

    wheel: Path
    venv: Path
    elsewhere: Path  # a working folder outside the source tree

    def cgw(self, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.run(
            [str(self.venv / "bin" / "cgw"), *args],
            cwd=self.elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=BUILD_IGNORE)
        else:
            shutil.copy2(REPO / name, src / name)
    _pip("wheel", "--no-deps", "--wheel-dir", str(tmp / "dist"), str(src))
    (wheel,) = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # the dependencies come from pip's cache; compiling them would only cost time here
    _pip("--python", str(venv / "bin" / "python"), "install", "--no-compile", str(wheel))
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    return Installed(wheel, venv, elsewhere)


def test_the_wheel_holds_every_data_file_of_the_packages(installed: Installed) -> None:
    data = {
        path.relative_to(REPO).as_posix()
        for package in PACKAGES
        for path in (REPO / package).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"}
    }
    assert "gateway/profiles/th-rs485.yaml" in data  # the walk sees the shipped profiles
    with zipfile.ZipFile(installed.wheel) as wheel:
        assert data <= set(wheel.namelist())


def test_the_installed_package_runs_from_the_venv(installed: Installed) -> None:
    code = "import gateway.profiles as p; print(p.SHIPPED)"
    python = installed.venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", code], cwd=installed.elsewhere, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.venv)


def test_check_config_finds_the_shipped_profiles(installed: Installed) -> None:
    example = REPO / "config" / "examples" / "gateway.yaml"
    done = installed.cgw(["check-config", str(example)], timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{example}: OK" in done.stdout
    for profile in ("pm-laser-rs485", "noise-rs485", "th-rs485", "env-station-rs485"):
        assert f"profile {profile}," in done.stdout


def test_the_demo_runs_with_its_own_broker(installed: Installed) -> None:
    done = installed.cgw(["demo", "--duration", "5", "--port", str(free_port())], timeout=60)
    assert done.returncode == 0, done.stderr
    assert "started a loopback mosquitto" in done.stdout
    # telemetry of a device read through a shipped profile reached the broker
    assert any(" pm-1 " in line and "pm25=" in line for line in done.stdout.splitlines())
